// Host-callable launchers of the CUDA kernels. No CUDA syntax here, so .cpp files may
// include it. Pointers are device pointers unless a comment says otherwise; the stream (a
// cudaStream_t, may be null) is the last argument. Launchers check their arguments and the
// launch (cudaGetLastError) and throw fot::Error on failure; kernels never throw. Launchers
// run on the calling thread's current device and never allocate: scratch comes from the
// caller (CudaBackend keeps grow-only buffers).
//
// Every kernel computes what its namesake in kernels/cpu/ops.h computes (same shape letters,
// same layouts, fp32 arithmetic). Where the order of a floating-point sum differs from the
// CPU loops the results differ by rounding only; the per-op tolerances live in
// tests/kernels/backend_conformance.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/core/dtype.h"

namespace fot::kernels::cuda {

// ---- device queries -------------------------------------------------------------------------
// Number of visible CUDA devices; 0 when there is no device or no driver (never throws).
int device_count();

// ---- elementwise (elementwise.cu) -------------------------------------------------------------
// out = a + b over n floats (out may alias a or b).
void add(float* out, const float* a, const float* b, int64_t n, void* stream);
// out = silu(gate) * up over n values; out in out_dtype (f32, or bf16/f16 rounded to nearest
// even: a GEMM input). An f32 out may alias gate or up.
void silu_mul(void* out, DType out_dtype, const float* gate, const float* up, int64_t n,
              void* stream);
// out[t] = table[ids[t] - row_begin] widened to f32, zeros for ids outside [row_begin,
// row_begin + rows). ids is a device array.
void embedding(float* out,          // (T, C)
               const int32_t* ids,  // (T)
               const void* table,   // (rows, C) in table_dtype
               DType table_dtype, int64_t T, int64_t C, int64_t row_begin, int64_t rows,
               void* stream);
// The same with up to kInlineIds ids passed by value (a decode step's): no host staging and
// no copy, and a graph captured around it keeps the ids as a kernel parameter.
constexpr int64_t kInlineIds = 8;
struct InlineIds {
    int32_t v[kInlineIds];
};
void embedding_inline(float* out, const InlineIds& ids, const void* table, DType table_dtype,
                      int64_t T, int64_t C, int64_t row_begin, int64_t rows, void* stream);
// dst[i] = src[i] converted to dst_dtype (f32, bf16 or f16), rounding to nearest even.
void convert_from_f32(void* dst, DType dst_dtype, const float* src, int64_t n, void* stream);
// x (T, H, D) rows of x_stride -> dst (H, *, D) with head stride dst_head_stride, rows
// [at, at + T), converted to dst_dtype (bf16: round to nearest even, bit-identical to
// fot::f32_to_bf16).
void scatter_heads(void* dst, DType dst_dtype, int64_t dst_head_stride, int64_t at, const float* x,
                   int64_t x_stride, int64_t T, int64_t H, int64_t D, void* stream);
// Fills n elements of dst_dtype with uniform values in [-scale, scale) from a counter-based
// hash of (seed, index): deterministic, for benchmarks with random weights.
void fill_uniform(void* dst, DType dst_dtype, int64_t n, uint64_t seed, float scale, void* stream);

// ---- decode GEMV (gemv.cu) -----------------------------------------------------------------
// out[T, N] = x[T, K] * w[N, K]^T for T <= kGemvMaxT, with the arithmetic of the cuBLAS path
// (blas.h): bf16/f16 w multiply x rounded to w's type, f32 w multiply f32 x; fp32
// accumulation. x is f32 or already in w's type. One pass over w with 16-byte loads, K split
// over gemv_split(w_dtype, K) warps per row; the order of the sums depends on K and the dtypes
// only, so a row has the same bits for every T and in a group (gemv.cu states the order).
// Supported: x and w 16-byte aligned, rows of w a multiple of 16 bytes, K % 4 == 0.
// w is read before the kernel launched just before it on the stream has finished (pdl.cuh),
// so w must not be that kernel's output: it is meant for weights.
constexpr int64_t kGemvMaxT = 4;
// Warps per row pair (1, 2, 4 or 8): from K, or FOT_CUDA_GEMV_SPLIT when set.
int gemv_split(DType w_dtype, int64_t K);
bool gemv_supported(const void* x, DType x_dtype, const void* w, DType w_dtype, int64_t T,
                    int64_t K);
void gemv(float* out, const void* x, DType x_dtype, const void* w, DType w_dtype, int64_t T,
          int64_t N, int64_t K, void* stream);
// Several GEMVs of the same x in one launch (q|k|v, gate|up in decode): out_i[T, N_i] =
// x * w_i^T, every row computed as gemv computes it (the same bits). Weights of one dtype.
// One launch instead of n, and a grid of sum N_i rows (fewer partial waves than N_i alone).
constexpr int kGemvMaxGroup = 3;
struct GemvTarget {
    float* out;     // (T, N)
    const void* w;  // (N, K)
    int64_t N;
};
void gemv_group(const GemvTarget* targets, int n, const void* x, DType x_dtype, DType w_dtype,
                int64_t T, int64_t K, void* stream);
// The MLP's gate|up GEMV with SiLU-mul as its epilogue: act[t, j] = silu(g) * u with
// g = x . w_gate[j] and u = x . w_up[j], each computed as gemv computes it and combined by
// silu_mul's formula: the bits of gemv_group + silu_mul, one launch and no f32 g, u round trip.
// act_dtype: f32 or w_dtype (the down GEMV's input). Supported as gemv_supported.
void gemv_silu_mul(void* act, DType act_dtype, const void* x, DType x_dtype, const void* w_gate,
                   const void* w_up, DType w_dtype, int64_t T, int64_t I, int64_t K, void* stream);

// A projection, the residual add and the next RMSNorm (o_proj or down_proj in decode):
// proj = a * w^T as gemv computes it, then, in the grid's last block, x += proj and
// xn = rmsnorm(x) * norm_w with add_rmsnorm's arithmetic: the bits of gemv + add_rmsnorm in one
// launch. proj, x: (T, C) f32; w: (C, K); xn: (T, C) in f32 or w_dtype. ticket: one counter,
// zero before the launch and zero again after it. Supported as gemv_supported.
void gemv_add_rmsnorm(float* proj, void* xn, DType xn_dtype, float* x, const float* norm_w,
                      float eps, const void* a, DType a_dtype, const void* w, DType w_dtype,
                      int64_t T, int64_t C, int64_t K, unsigned* ticket, void* stream);

// ---- row-wise (rowwise.cu) ---------------------------------------------------------------------
// out in out_dtype: f32, or bf16/f16 rounded to nearest even (a GEMM input).
void rmsnorm(void* out,  // (T, C)
             DType out_dtype,
             const float* x,  // (T, C)
             const float* w,  // (C)
             int64_t T, int64_t C, float eps, void* stream);
// x += r (in place, f32), then rmsnorm of the new x into out: the bits of add then rmsnorm.
void add_rmsnorm(void* out, DType out_dtype, float* x, const float* r, const float* w, int64_t T,
                 int64_t C, float eps, void* stream);
// HF rotate-half RoPE in place; inv_freq is computed on the host exactly as the CPU kernel
// does. D even, D <= 256.
void rope(float* x, int64_t T, int64_t H, int64_t D, int64_t stride, int64_t first_pos, float theta,
          void* stream);
// rope on q and k (when rotate; positions at + t), then k and v into k_store / v_store
// ([H, *, D] of store_dtype, head_stride elements apart) at rows at + t, in one launch with the
// bits of rope and scatter_heads; k itself is not written. D even, D <= 256.
void rope_store_kv(float* q, int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                   int64_t v_stride, void* k_store, void* v_store, DType store_dtype,
                   int64_t head_stride, int64_t at, int64_t T, int64_t H, int64_t D, float theta,
                   bool rotate, void* stream);
// Per row of logits (T, V): the max and the sum of exp(x - max) (accumulated in double), for
// the vocab-parallel log-softmax (the all-reduce of max and sum happens outside).
void row_max_sumexp(const float* logits, int64_t T, int64_t V, float* max_out, float* sum_out,
                    void* stream);

// parts (T, 3) = (row max, sum of exp(x - max), logit of targets[t] (device ids) when
// targets[t] - vocab_begin is a column in [0, V), else 0).
void logsoftmax_parts(float* parts, const float* logits, int64_t T, int64_t V,
                      const int32_t* targets, int64_t vocab_begin, void* stream);

// ---- attention partials (attention.cu); layout as in kernels/cpu/ops.h ----------------------
// Largest head dim the attention kernels take.
constexpr int64_t kMaxHeadDim = 128;
// attn_accumulate runs T <= kAttnDecodeMaxT queries with the decode kernels, more with the
// tiled (exact) or tensor-core (fast, bf16 stores) ones.
constexpr int64_t kAttnDecodeMaxT = 8;

void attn_partial_init(float* part, int64_t H, int64_t T, int64_t D, void* stream);

// How many key splits attn_accumulate should use for this shape on a device with `sm_count`
// multiprocessors (>= 1). With splits > 1 it needs splits * H * T * (D + 2) floats of scratch.
// Many queries (prefill) give 1; few queries over many keys (decode) split the keys so that
// every multiprocessor streams a slice (flash-decoding). block_queries: queries per block of
// the prefill kernel that will run (64; the tensor-core kernel's 16 x 4 x attn_tc_m_tiles).
int64_t attn_accumulate_splits(int64_t H, int64_t T, int64_t S, int64_t D, int64_t causal_offset,
                               int sm_count, int64_t block_queries = 64);

// Folds keys [0, S) into the partial, as kernels::cpu::attn_accumulate. fast = false: fp32
// operands; T <= 8 uses a decode kernel (attention_decode.cu when the store's rows are 8-byte
// aligned, else a one-thread-per-dim kernel), larger T a tiled fp32 kernel (64 queries x 32 keys
// per shared-memory tile); both stream keys through shared memory with an online softmax. fast =
// true: the `fast` precision's roundings (runtime/core/precision.h: bf16 q, k, v and P.V operand,
// fp32 statistics); T > 8 with a bf16 store runs the tensor-core kernel (attention_tc.cu), other
// cases the fp32 kernels with the same roundings. With splits > 1 each split writes a fresh partial
// into `scratch` and a merge folds them into `part` (merge order: part, then splits in key order):
// a merge launch, or in the decode kernel its last block per head, which counts finished blocks
// in `tickets` (H zeroed counters, left zeroed; needed when splits > 1 and T <= 8).
void attn_accumulate(float* part,     // (H, T, D + 2)
                     const float* q,  // (T, H, D) rows of q_stride
                     int64_t q_stride,
                     const void* k,  // (H, *, D) in kv_dtype, head stride kv_head_stride
                     const void* v,  // (H, *, D)
                     DType kv_dtype, int64_t kv_head_stride, int64_t H, int64_t T, int64_t S,
                     int64_t D, float scale, int64_t causal_offset, bool fast, int64_t splits,
                     float* scratch, unsigned* tickets, void* stream);

// attn_partial_init, attn_accumulate (splits, scratch, tickets as there) and
// attn_partial_finalize(out, ...) as one launch of the decode kernel, which then writes out
// itself (the same bits; part is scratch whose contents are left unspecified). Only where
// attn_accumulate would run the decode kernel (T <= 8, S >= 1, its store requirements) and out
// is f32/bf16/f16: attn_one_store_supported.
bool attn_one_store_supported(DType out_dtype, const void* k, const void* v, DType kv_dtype,
                              int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D,
                              int64_t causal_offset, int64_t splits);
void attn_one_store(void* out, DType out_dtype, int64_t out_stride, float* part, const float* q,
                    int64_t q_stride, const void* k, const void* v, DType kv_dtype,
                    int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D, float scale,
                    int64_t causal_offset, bool fast, int64_t splits, float* scratch,
                    unsigned* tickets, void* stream);

// The decode kernel alone (attention_decode.cu; T <= 8 queries): one block per head and chunk
// of at most kDecodeChunk keys, scores by 8 lanes per key and a coalesced P.V, at memory
// bandwidth.
// Supported: f32/bf16/f16 stores whose rows are 8-byte aligned. `splits` must give chunks of
// at most kDecodeChunk keys (attn_accumulate_splits does). With splits > 1 the last block of
// each head merges the scratch into part (tickets: H zeroed counters, left zeroed).
constexpr int64_t kDecodeChunk = 512;
bool attn_decode_supported(const void* k, const void* v, DType kv_dtype, int64_t kv_head_stride,
                           int64_t T, int64_t D);
// out != null: part starts empty (not read) and the normalised result goes to out
// [T, out_stride] (f32/bf16/f16) as attn_partial_finalize writes it (attn_one_store).
void attn_decode(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                 DType kv_dtype, int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D,
                 float scale, int64_t causal_offset, bool fast, int64_t splits, float* scratch,
                 unsigned* tickets, void* stream, void* out = nullptr,
                 DType out_dtype = DType::kF32, int64_t out_stride = 0);

// The tensor-core kernel alone (attention_tc.cu; bf16 mma.sync with fp32 accumulation, any T):
// whether it takes these keys/values (bf16, D <= kMaxHeadDim, rows at least 4-byte aligned) and
// scale (positive and finite: the softmax takes the max of unscaled scores),
// and the launch, with the partial layout and split semantics of attn_accumulate (it does
// not merge: with splits > 1 the caller merges the scratch). m_tiles: 16-row m-tiles per
// warp, 1 (64-query blocks) or 2 (128); 0 = attn_tc_m_tiles(T, D). With one split both give the
// same bits; with more, the splits' key ranges follow the block's last query, so they may
// differ.
bool attn_accumulate_tc_supported(const void* k, const void* v, DType kv_dtype,
                                  int64_t kv_head_stride, int64_t D, float scale);
void attn_accumulate_tc(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                        int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D,
                        float scale, int64_t causal_offset, int64_t splits, float* scratch,
                        void* stream, int m_tiles = 0);
// attn_partial_init + attn_accumulate_tc (one split) + attn_partial_finalize in one launch:
// the blocks start from the empty state and write o / l of their rows into out [T,
// out_stride] (f32, bf16 or f16) with the finalize's arithmetic, the same bits. S, T, H >= 1.
void attn_one_store_tc(void* out, DType out_dtype, int64_t out_stride, const float* q,
                       int64_t q_stride, const void* k, const void* v, int64_t kv_head_stride,
                       int64_t H, int64_t T, int64_t S, int64_t D, float scale,
                       int64_t causal_offset, void* stream, int m_tiles = 0);
// The default m-tiles per warp for T queries of head dim D: FOT_CUDA_ATTN_MT (1 or 2) when
// set, else 2 when the wgmma kernel is the default (attn_tc_wgmma_default: its blocks are 128
// queries too), else 2 for T > 64 and D <= 104, 1 otherwise. Callers size key splits by
// blocks of 64 x attn_tc_m_tiles queries.
int attn_tc_m_tiles(int64_t T, int64_t D);
// m_tiles of attn_accumulate_tc / attn_one_store_tc that asks for the wgmma kernel
// (attention_wgmma.cu: blocks of two warpgroups, 64 queries each, wgmma.mma_async for Q.K^T
// and P.V; the same partials, the same softmax). It needs attn_tc_wgmma_supported(D).
constexpr int kAttnTcWgmma = -1;
// The device is compute capability 9.0 (H100 / H200: sm_90a code runs there); cached per
// process. The emulator reports 9.0.
bool wgmma_device();
// wgmma_device() and an instance for head dim D: 33-64, 65-104 or 113-128.
bool attn_tc_wgmma_supported(int64_t D);
// Whether m_tiles 0 takes the wgmma kernel: FOT_CUDA_ATTN_WGMMA=1 and
// attn_tc_wgmma_supported(D). Off by default until a GPU run has measured it (docs/cuda.md).
bool attn_tc_wgmma_default(int64_t D);
// Overrides FOT_CUDA_ATTN_WGMMA for this process: 1 on, 0 off, -1 back to the variable (tests,
// benchmark comparisons).
void set_attn_tc_wgmma(int on);
// Test probe of the wgmma wrappers (kernels/cuda/wgmma.cuh) on one warpgroup: out [64, N] f32
// = a [64, K] (bf16, row-major) x B, B given as b [N, K] (K-major) or, with b_mn_major,
// b [K, N] (MN-major), stored in shared memory as the attention kernel stores K and V tiles.
// N in {64, 104, 128}, K a multiple of 16 up to 128; needs wgmma_device().
void wgmma_probe(float* out, const void* a, const void* b, int N, int K, bool b_mn_major,
                 void* stream);

// out (H, T, D + 2) = merge of R partials (R, H, T, D + 2) in order; out may alias parts.
void attn_partial_merge(float* out, const float* parts, int64_t R, int64_t H, int64_t T, int64_t D,
                        void* stream);

// out[t, h*D + d] = o / l; zeros where l == 0. out in out_dtype: f32, or bf16/f16 rounded to
// nearest even (a GEMM input).
void attn_partial_finalize(void* out, DType out_dtype, int64_t out_stride, const float* part,
                           int64_t H, int64_t T, int64_t D, void* stream);

// ---- exact top-k retrieval (topk.cu) -----------------------------------------------------------
// Candidates of up to this many slots (K rounded up to a power of two) are sorted in shared
// memory; larger K sorts in the caller's scratch (any K works).
constexpr int64_t kSharedTopK = 1024;

// Scratch floats one (head, query) row of memory_topk needs: its S scores, plus room to sort
// its candidates when K > kSharedTopK or for the sliced select's candidates. More scratch lets
// it handle more rows per pass.
int64_t memory_topk_row_scratch(int64_t S, int64_t K);

// As kernels::cpu::memory_topk: per (h, t) the K best keys (score desc, position asc), sorted
// best first, absent slots (-inf, -1, -1). Scores are fp32 dot products: <= 8 queries in the
// call (decode) and keys not in bf16 by an fmaf chain over d; prefill calls over bf16 keys (when
// tc_scores) on the tensor cores with q split in three bf16 pieces (fp32-accurate: both are
// within ~1e-6 relative of the exact score, but not the same bits). Within one call every path
// and scratch size gives the same bits (same scorer, exact selection):
//  - score rows: the scores of a group of (h, t) rows go to `scratch` (a lane-per-key kernel over
//    warp-staged rows for <= 8 queries, else the tiled kernel), then one block per row
//    radix-selects the K-th best and bitonic-sorts the survivors. Any K.
//  - the score-rows path's select, when a pass has fewer than 1024 rows (decode; prefill when
//    the scratch holds fewer rows of S scores) and S spans at least 4 slices of 8192 scores
//    (K <= 1024, 4K <= 8192): one block per (row, slice) keeps the slice's K best, then one
//    block per row selects over slices x K of them (the same bits as one block per row over
//    S scores, kScoreRowsOneBlock, which keeps more of the GPU idle).
//  - filtered (K <= kSharedTopK, a sample of >= 4K keys): every 8th tile of 32 keys is scored
//    and selected first; the K-th best of that sample bounds the row's K-th best, so the other
//    keys are scored and only those better than the bound are kept (at most 32K per row; a row
//    that overflows makes the call start again through score rows, after one wait for the
//    stream). Scratch holds an eighth of the scores, or the candidates (topk.cu).
// kAuto takes the filtered path when it applies and more than 8 queries are scored (prefill),
// else the score-rows path. `scratch`
// needs memory_topk_row_scratch(S, K) floats per row (at least one row); more lets a pass take more
// rows. With S == 0 the keys are not read (k and row_pos may be null) and every slot is absent.
enum class TopkPath { kAuto, kScoreRows, kScoreRowsOneBlock, kFiltered };
// What the filtered path kept, per (head, query) row: filled when passed to memory_topk (which
// then waits for the stream after each pass; for tests and benchmarks, not for production).
struct TopkFilterStats {
    int64_t rows = 0;           // rows the filtered path selected
    int64_t overflow_rows = 0;  // rows whose list overflowed (selected over all keys)
    int64_t appended = 0;       // keys that beat their row's bound, summed over rows
    int64_t max_appended = 0;   // the most of one row
    int64_t cap = 0;            // the list size of the last call
};
bool memory_topk_filtered_supported(int64_t S, int64_t D, int64_t K);
void memory_topk(float* scores, int64_t* rows, int64_t* positions,     // (H, T, K) each
                 const float* q, int64_t q_stride,                     // (T, H, D)
                 const void* k, DType k_dtype, int64_t k_head_stride,  // (H, *, D)
                 const int64_t* row_pos,                               // (S)
                 int64_t H, int64_t T, int64_t S, int64_t D, int64_t K, float scale, float* scratch,
                 int64_t scratch_floats, void* stream, TopkPath path,
                 TopkFilterStats* stats = nullptr, bool tc_scores = true);
void memory_topk(float* scores, int64_t* rows, int64_t* positions,     // (H, T, K) each
                 const float* q, int64_t q_stride,                     // (T, H, D)
                 const void* k, DType k_dtype, int64_t k_head_stride,  // (H, *, D)
                 const int64_t* row_pos,                               // (S)
                 int64_t H, int64_t T, int64_t S, int64_t D, int64_t K, float scale, float* scratch,
                 int64_t scratch_floats, void* stream);

// As kernels::cpu::topk_threshold (one block per (h, t), radix select over R x K).
void topk_threshold(float* thr_score, int64_t* thr_pos,             // (H, T)
                    const float* scores, const int64_t* positions,  // (R, H, T, K)
                    int64_t R, int64_t H, int64_t T, int64_t K, void* stream);

// As kernels::cpu::attn_accumulate_selected (candidates summed in slot order, like the CPU).
// D <= kMaxHeadDim; v is read only at the rows of passing candidates.
void attn_accumulate_selected(float* part, const void* v, DType v_dtype, int64_t v_head_stride,
                              const float* scores, const int64_t* rows, const int64_t* positions,
                              const float* thr_score, const int64_t* thr_pos, int64_t H, int64_t T,
                              int64_t D, int64_t K, void* stream);

}  // namespace fot::kernels::cuda
