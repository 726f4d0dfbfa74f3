// CPU kernels: plain-pointer functions over dense row-major float32 data (weights and
// memory may be bf16/f16, converted on the fly). No runtime/ includes: everything a kernel
// needs arrives as pointers, sizes and a dtype.
//
// Shape letters: T tokens (queries) of this call, S keys, C hidden, H heads (of this rank),
// D head dim, I intermediate, V vocab (of this rank), N/K generic GEMM sizes.
// Multi-threading: kernels use OpenMP internally; GEMMs go to BLAS. Callers must not call
// them from inside an OpenMP parallel region.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/core/dtype.h"

namespace fot::kernels::cpu {

// Below this many multiply-adds a kernel runs on the calling thread: waking the OpenMP team
// costs more than it saves (the golden test models are tiny).
constexpr int64_t kParallelMinWork = int64_t{1} << 18;

// out = x * rsqrt(mean(x^2) + eps) * w, per row; the reference computes in fp32.
void rmsnorm(float* out,      // (T, C)
             const float* x,  // (T, C)
             const float* w,  // (C)
             int64_t T, int64_t C, float eps);

// dst = src rounded to `dtype` (bf16 or f16, nearest even) and widened back to f32; a copy
// for f32. dst may alias src. Precision::kFast rounds the GEMM input x with it.
void round_to_dtype(float* dst, const float* src, int64_t n, DType dtype);

// out[t, n] = sum_k x[t, k] * w[n, k]   (x times w-transposed; w is a torch Linear weight).
// w is f32, bf16 or f16; low-precision weights are widened tile by tile (no full f32 copy).
void matmul(float* out,      // (T, N)
            const float* x,  // (T, K)
            const void* w,   // (N, K) in w_dtype
            DType w_dtype, int64_t T, int64_t N, int64_t K);

// bf16 GEMM on the AVX512_BF16 dot-product instruction or on AMX tiles (matmul_bf16.cpp):
// out[t, n] = sum_k bf16(x[t, k]) * w[n, k] with fp32 accumulation, x rounded to bf16 (nearest
// even) as the `fast` precision does, w bf16 bits. Sums run over k in pairs, in order, as
// vdpbf16ps (odd product first) or tdpbf16ps (even first) adds them (not BLAS's order:
// results differ from matmul() by rounding). kNative runs the AVX-512 kernel when
// bf16_dot_available(), kAmx the AMX one when bf16_amx_available(), else their emulated
// kernels; kEmulated and kAmxEmulated always run a scalar copy of the instruction's
// arithmetic with the same blocking (for tests on any CPU).
enum class Bf16DotKernel { kNative, kEmulated, kAmx, kAmxEmulated };
// This CPU has AVX512F and AVX512_BF16 (checked at run time, once); FOT_CPU_BF16_DOT=0 says no.
bool bf16_dot_available();
// This CPU has AMX-TILE and AMX-BF16 and the OS granted the tile state (checked at run time,
// once); FOT_CPU_AMX=0 says no.
bool bf16_amx_available();
// CPUID reports AMX-TILE and AMX-BF16 (whether or not the OS grants them or FOT_CPU_AMX=0).
bool cpu_has_amx_bf16();
// The kernel that `fast` products of bf16 operands take on this CPU: kAmx when
// bf16_amx_available(), else kNative when bf16_dot_available() and the CPU has no AMX at all,
// else kEmulated, meaning none (SGEMM on rounded operands is faster than the scalar kernel).
Bf16DotKernel fast_bf16_dot_kernel();
// The same bf16 GEMM with the second operand in the other layout: out[t, n] =
// sum_k bf16(x[t, k]) * v[k, n], v rows ldv apart (attention's P.V over a store's values).
// Any kernel: kNative and kAmx fall back to their emulated kernels like matmul_bf16_dot.
void matmul_bf16_xv(float* out,         // (T, N)
                    const float* x,     // (T, K)
                    const uint16_t* v,  // (K, >= N) bf16 bits, rows ldv apart
                    int64_t ldv, int64_t T, int64_t N, int64_t K, Bf16DotKernel kernel);
void matmul_bf16_dot(float* out,         // (T, N)
                     const float* x,     // (T, K)
                     const uint16_t* w,  // (N, K) bf16 bits
                     int64_t T, int64_t N, int64_t K, Bf16DotKernel kernel);

// Gathers rows: out[t] = table[ids[t] - row_begin] for ids in [row_begin, row_begin+rows),
// and zeros for ids outside (vocab-parallel embedding; the all-reduce fills them in).
void embedding(float* out,          // (T, C)
               const int32_t* ids,  // (T)
               const void* table,   // (rows, C) in table_dtype
               DType table_dtype, int64_t T, int64_t C, int64_t row_begin, int64_t rows);

// RoPE, HF rotate-half convention: dims (i, i + D/2) form a pair. Token t of x is rotated
// by angle (first_pos + t) * inv_freq[i], inv_freq[i] = theta^(-2i/D), computed in fp32 as
// the reference does. x rows hold H heads of D; row stride `stride` floats.
void rope(float* x,  // (T, H, D) rows of `stride`
          int64_t T, int64_t H, int64_t D, int64_t stride, int64_t first_pos, float theta);

// out = silu(gate) * up, elementwise over n.
void silu_mul(float* out, const float* gate, const float* up, int64_t n);

// out = a + b, elementwise over n (out may alias a or b).
void add(float* out, const float* a, const float* b, int64_t n);

// ---- attention as partials ----------------------------------------------------------------
// An attention partial for T queries and H heads is a float array (H, T, D + 2): for each
// (h, t) the unnormalised weighted value sum o[0..D), then the running max m and the sum of
// exponentials l (relative to m). Partials over disjoint key sets merge exactly (flash-
// decoding): M = max m_r, L = sum l_r e^(m_r - M), O = sum o_r e^(m_r - M), out = O / L.

// Sets every (h, t) to the empty partial: o = 0, m = -inf, l = 0.
void attn_partial_init(float* part, int64_t H, int64_t T, int64_t D);

// Folds S keys into the partial. Key j of head h is k[h * kv_head_stride + j * D] (in
// kv_dtype; likewise v). Query t of head h is q[t * q_stride + h * D]. Scores are
// (q . k) * scale. Causal: query t sees key j iff j <= t + causal_offset; pass
// causal_offset >= S (e.g. INT64_MAX / 2) for no mask. Masked keys get no weight (the
// reference clamps them to -1e6, which is exactly zero weight after exp).
// bf16_operands (Precision::kFast, runtime/core/precision.h): q, k and v are rounded to bf16
// (nearest even; a no-op for bf16 stores) before the products, which accumulate in fp32;
// m and l stay fp32 (l sums the fp32 p = exp(s - m)); o adds round_bf16(p) * v, where m is
// the running max after the key block holding the key (blocks of 256 keys from key 0 when
// T >= 8, 128 below), as the online softmax computes it.
void attn_accumulate(float* part,     // (H, T, D + 2)
                     const float* q,  // (T, H, D) rows of q_stride
                     int64_t q_stride,
                     const void* k,  // (H, *, D), head stride kv_head_stride elements
                     const void* v,  // (H, *, D)
                     DType kv_dtype, int64_t kv_head_stride, int64_t H, int64_t T, int64_t S,
                     int64_t D, float scale, int64_t causal_offset, bool bf16_operands = false);

// Merges R partials laid out back to back (R, H, T, D + 2) into `out` (H, T, D + 2), in rank
// order. out may alias the first partial.
void attn_partial_merge(float* out, const float* parts, int64_t R, int64_t H, int64_t T, int64_t D);

// out[t, h*D + d] = o / l for each (h, t). Rows with l == 0 (no key at all) become zeros.
void attn_partial_finalize(float* out,  // (T, H, D) rows of out_stride
                           int64_t out_stride, const float* part, int64_t H, int64_t T, int64_t D);

// Converts x (T, H, D) rows of x_stride (f32) into `dst` of dst_dtype laid out head-major
// (H, *, D) with head stride dst_head_stride, at rows [at, at + T) of each head.
void scatter_heads(void* dst, DType dst_dtype, int64_t dst_head_stride, int64_t at, const float* x,
                   int64_t x_stride, int64_t T, int64_t H, int64_t D);

// ---- exact top-k retrieval ----------------------------------------------------------------
// Candidate order: higher score first, then lower global position.
// For each (h, t): the K best of the S keys of head h (scores (q . k) * scale). Outputs
// (H, T, K) sorted best first; missing slots (S < K) get score -inf, row -1, position -1.
void memory_topk(float* scores, int64_t* rows, int64_t* positions,     // (H, T, K) each
                 const float* q, int64_t q_stride,                     // (T, H, D)
                 const void* k, DType k_dtype, int64_t k_head_stride,  // (H, *, D)
                 const int64_t* row_pos,                               // (S) global positions
                 int64_t H, int64_t T, int64_t S, int64_t D, int64_t K, float scale);

// thr = K-th best of the R x K candidates of each (h, t); (-inf, INT64_MAX) when fewer than
// K are real.
void topk_threshold(float* thr_score, int64_t* thr_pos,             // (H, T)
                    const float* scores, const int64_t* positions,  // (R, H, T, K)
                    int64_t R, int64_t H, int64_t T, int64_t K);

// Folds the candidates at or before (thr_score, thr_pos) into the partial (H, T, D + 2).
void attn_accumulate_selected(float* part, const void* v, DType v_dtype, int64_t v_head_stride,
                              const float* scores, const int64_t* rows, const int64_t* positions,
                              const float* thr_score, const int64_t* thr_pos, int64_t H, int64_t T,
                              int64_t D, int64_t K);

// ---- vocab-parallel log-softmax helpers ----------------------------------------------------
// For each row t of logits (T, V): row max and sum of exp(x - max) (for a later all-reduce).
void row_max_sumexp(const float* logits, int64_t T, int64_t V, float* max_out, float* sum_out);

// parts (T, 3) = (row max, sum of exp(x - max), logits[t, targets[t] - vocab_begin] when that
// column is in [0, V), else 0); targets[t] < 0 means no target.
void logsoftmax_parts(float* parts, const float* logits, int64_t T, int64_t V,
                      const int32_t* targets, int64_t vocab_begin);

}  // namespace fot::kernels::cpu
