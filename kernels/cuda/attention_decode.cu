// Decode attention (T <= 8 queries, e.g. one generated token) at memory bandwidth: folds keys
// [0, S) of a store into the partials [H, T, D + 2] like the other attention kernels, split
// over many blocks (flash-decoding) so every SM streams keys.
//
// One block of 256 threads (8 warps) = one head x one chunk of at most kChunk keys:
//   scores   8 lanes per key (key_dots.cuh: each load instruction reads 64 contiguous bytes
//            of 4 rows, not 8 bytes of 32) dot it with the T queries held in shared memory;
//            scores go to shared memory
//   softmax  per query: block max and sum of exp over the chunk (fp32); p kept in shared
//            memory (rounded to bf16 in `fast`, where l sums the unrounded p)
//   P.V      thread = (8-byte piece of the value row, key group): coalesced row reads, T
//            accumulators per dim, then a shared-memory reduction over the key groups
// and writes the chunk's partial: into the caller's partial when there is one split (merged
// with the state already there), else into its slice of the split scratch; then the last
// block of the head to finish (a ticket counter per head) merges the slices into the
// partial, in split order (no merge launch). Exact mode computes in fp32 from the stored
// values; fast mode rounds q, k, v and the P.V operand to bf16 (runtime/core/precision.h).
//
// Three instances, the same bits: T 2..8 (registers for 8 queries' dots, 2 key groups in
// flight per lane); one query (8 key groups in flight per lane, 16 value rows per thread in
// P.V); one query with the chunk's value rows staged in shared memory by cp.async at the
// start (when they fit 100 KiB: bf16/f16 up to head_dim 100), so that V streams in while K is
// scored instead of after it (4 key groups in flight; the staged P.V needs no latency hiding).
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/key_dots.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.cuh"

namespace fot::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxT = 8;
constexpr int kChunk = static_cast<int>(kDecodeChunk);  // keys per block at most
constexpr int kMaxGroups = 8;                           // key groups of the P.V phase
static_assert(kMaxT <= kThreads, "the last block's threads tid < T own a row each");
static_assert(kMaxHeadDim * 4 / 8 <= kThreads / 2,
              "pv_groups >= 2: the last block's merge stages T x (D + 1) floats in acc_s");

// Key groups of the P.V phase for rows of D elements of esz bytes (8-byte pieces).
__host__ __device__ __forceinline__ int pv_groups(int D, int esz) {
    const int pieces = D * esz / 8;
    const int g = kThreads / pieces;
    return g < kMaxGroups ? g : kMaxGroups;
}

// out[i] = x in out's dtype (0 f32, 1 bf16, 2 f16), rounded as attn_partial_finalize rounds.
__device__ __forceinline__ void store_out(void* out, int out_dt, int64_t i, float x) {
    if (out_dt == 1) {
        static_cast<__nv_bfloat16*>(out)[i] = from_f32<__nv_bfloat16>(x);
    } else if (out_dt == 2) {
        static_cast<__half*>(out)[i] = from_f32<__half>(x);
    } else {
        static_cast<float*>(out)[i] = x;
    }
}

// Dynamic shared memory: qs [T][D], ps [T][kChunk], acc [groups][T][D] floats.
// Then, when the chunk's value rows are staged (stage_v), kChunk rows of D elements at a
// 16-byte aligned offset.
__host__ __device__ __forceinline__ size_t smem_floats_bytes(int64_t T, int64_t D, int esz) {
    const size_t b =
        sizeof(float) *
        static_cast<size_t>(T * D + T * kChunk + pv_groups(static_cast<int>(D), esz) * T * D);
    return (b + 15) / 16 * 16;
}
size_t smem_bytes(int64_t T, int64_t D, int esz, bool stage_v) {
    return smem_floats_bytes(T, D, esz) +
           (stage_v ? static_cast<size_t>(kChunk) * static_cast<size_t>(D * esz) : 0);
}
// Staged value rows at most: two blocks (the launch bounds) still fit an SM's 228 KiB of
// shared memory with them (bf16/f16 rows up to head_dim 100, f32 up to 50).
constexpr size_t kStageMaxBytes = 102400;

// The elements of an 8-byte piece of a row, as floats (rounded to bf16 when kRound).
template <typename E, bool kRound>
__device__ __forceinline__ void unpack(const uint2& raw, float* out) {
    constexpr int kN = 8 / sizeof(E);
    const E* e = reinterpret_cast<const E*>(&raw);
#pragma unroll
    for (int i = 0; i < kN; ++i) {
        const float x = to_f32(e[i]);
        out[i] = kRound ? attn::round_bf16(x) : x;
    }
}

// kPasses: key groups in flight per lane in the score phase (warp_key_dots); kMaxQ: queries
// the registers are sized for (T <= kMaxQ). One query (decode proper) takes 8 passes unstaged:
// with one dot per key the registers that T = 8 needs for dots hold loads in flight instead
// (the streaming is latency-bound otherwise: 2 passes keep 1.6 KB per warp in flight).
// kStageV (one query only): the chunk's value rows are staged in shared memory (below).
template <typename E, bool kFast, int kPasses, int kMaxQ, bool kStageV>
__global__ void __launch_bounds__(kThreads, 2)
    decode_split_kernel(float* part, const float* __restrict__ q, int64_t q_stride,
                        const E* __restrict__ k, const E* __restrict__ v, int64_t kv_head_stride,
                        int64_t H, int64_t T, int64_t S, int D, float scale, int64_t causal_offset,
                        int64_t splits, float* scratch, unsigned* tickets, void* out, int out_dt,
                        int64_t out_stride) {
    static_assert(!kStageV || kMaxQ == 1, "value rows are staged for one query only");
    pdl_start();
    constexpr int kN = 8 / sizeof(E);  // elements per 8-byte piece
    // kFast rounds f32/f16 stores to bf16; bf16 stores are already bf16.
    constexpr bool kRoundKv = kFast && !std::is_same_v<E, __nv_bfloat16>;
    extern __shared__ float4 smem_dec[];
    __shared__ float red[kWarps][kMaxQ];            // block reductions
    __shared__ float stat_m[kMaxQ], stat_l[kMaxQ];  // chunk max, sum
    __shared__ int last_block;                      // of this head's splits

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t h = blockIdx.y, split = blockIdx.x;
    const int nq = static_cast<int>(T);
    const bool causal = causal_offset < S;
    const attn::KeyRange kr = attn::split_range(S, T - 1, causal_offset, split, splits, kN * 4);
    const int n = static_cast<int>(kr.ke - kr.kb);  // <= kChunk (the launcher checks)
    const E* kh = k + h * kv_head_stride + kr.kb * D;
    const E* vh = v + h * kv_head_stride + kr.kb * D;
    const int pieces = D / kN;
    const int groups = pv_groups(D, sizeof(E));
    float* qs = reinterpret_cast<float*>(smem_dec);  // [nq][D]
    float* ps = qs + nq * D;                         // [nq][kChunk]: scores, then p
    float* acc_s = ps + nq * kChunk;                 // [groups][nq][D]

    // kStageV: the chunk's value rows (contiguous, n x D elements) go to shared memory with
    // cp.async now, so that they stream in while the keys are scored; P.V then reads them there.
    uint2* vstage = reinterpret_cast<uint2*>(reinterpret_cast<char*>(smem_dec) +
                                             smem_floats_bytes(T, D, sizeof(E)));
    if constexpr (kStageV) {
        const int64_t bytes = static_cast<int64_t>(n) * D * static_cast<int64_t>(sizeof(E));
        if (reinterpret_cast<uintptr_t>(vh) % 16 == 0 && bytes % 16 == 0) {
            const uint4* src = reinterpret_cast<const uint4*>(vh);
            uint4* dst = reinterpret_cast<uint4*>(vstage);
            for (int64_t p = tid; p < bytes / 16; p += kThreads) {
                mma::cp_async<16>(dst + p, src + p, true);
            }
        } else {
            const uint2* src = reinterpret_cast<const uint2*>(vh);
            for (int64_t p = tid; p < bytes / 8; p += kThreads) {
                mma::cp_async<8>(vstage + p, src + p, true);
            }
        }
        mma::cp_async_commit();
    }
    for (int i = tid; i < nq * D; i += kThreads) {
        const int t = i / D, d = i - t * D;
        const float x = q[t * q_stride + h * D + d];
        qs[t * D + d] = kFast ? attn::round_bf16(x) : x;
    }
    __syncthreads();

    // ---- scores: 8 lanes per key (key_dots.cuh), warps on interleaved groups of keys ----
    constexpr int kKeysPerStep = kKeysPerPass * kPasses;
    for (int j0 = warp * kKeysPerStep; j0 < n; j0 += kWarps * kKeysPerStep) {
        float dot[kPasses][kMaxQ];
        warp_key_dots<E, kRoundKv, kMaxQ, kPasses>(kh, D, n, j0, qs, D, nq, dot);
        if (lane % kKeyLanes != 0) continue;
#pragma unroll
        for (int b = 0; b < kPasses; ++b) {
            const int j = j0 + lane / kKeyLanes + kKeysPerPass * b;
            if (j >= n) continue;
            const int64_t jg = kr.kb + j;
#pragma unroll
            for (int t = 0; t < kMaxQ; ++t) {
                if (t < nq) {
                    const bool visible = !causal || jg <= t + causal_offset;
                    ps[t * kChunk + j] = visible ? dot[b][t] * scale : kNegInf;
                }
            }
        }
    }
    __syncthreads();

    // ---- softmax statistics of the chunk, per query ----
    for (int t = 0; t < nq; ++t) {
        float mx = kNegInf;
        for (int j = tid; j < n; j += kThreads) mx = fmaxf(mx, ps[t * kChunk + j]);
        mx = warp_max(mx);
        if (lane == 0) red[warp][t] = mx;
    }
    __syncthreads();
    if (tid < nq) {
        float mx = kNegInf;
        for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, red[w][tid]);
        stat_m[tid] = mx;
    }
    __syncthreads();
    for (int t = 0; t < nq; ++t) {
        const float m = stat_m[t];
        float sum = 0.f;
        for (int j = tid; j < n; j += kThreads) {
            const float s = ps[t * kChunk + j];
            const float p = (s == kNegInf) ? 0.f : expf(s - m);
            sum += p;
            ps[t * kChunk + j] = kFast ? attn::round_bf16(p) : p;  // fast: bf16 P.V operand
        }
        sum = warp_sum(sum);
        if (lane == 0) red[warp][t] = sum;
    }
    __syncthreads();
    if (tid < nq) {
        float sum = 0.f;
        for (int w = 0; w < kWarps; ++w) sum += red[w][tid];
        stat_l[tid] = sum;
    }

    // ---- P.V: thread = (piece, key group) ----
    const int piece = tid % pieces, group = tid / pieces;
    float acc[kMaxQ][kN];
#pragma unroll
    for (int t = 0; t < kMaxQ; ++t) {
#pragma unroll
        for (int u = 0; u < kN; ++u) acc[t][u] = 0.f;
    }
    if constexpr (kStageV) {
        mma::cp_async_wait<0>();
        __syncthreads();  // every thread's staged rows are visible
    }
    if (group < groups) {
        const int64_t row_pieces = D / kN;
        // The same sums from global memory or from the staged rows.
        auto pv = [&](auto row_piece) {
#pragma unroll(kStageV ? 4 : kMaxQ == 1 ? 16 : 8)  // staged rows: no memory latency
            for (int j = group; j < n; j += groups) {
                float e[kN];
                unpack<E, kRoundKv>(row_piece(j), e);
#pragma unroll
                for (int t = 0; t < kMaxQ; ++t) {
                    if (t < nq) {
                        const float p = ps[t * kChunk + j];
#pragma unroll
                        for (int u = 0; u < kN; ++u) acc[t][u] = fmaf(p, e[u], acc[t][u]);
                    }
                }
            }
        };
        if constexpr (kStageV) {
            const uint2* col = vstage + piece;
            pv([&](int j) { return col[j * row_pieces]; });
        } else {
            const uint2* col = reinterpret_cast<const uint2*>(vh) + piece;
            pv([&](int j) { return __ldg(col + j * row_pieces); });
        }
#pragma unroll
        for (int t = 0; t < kMaxQ; ++t) {  // compile-time t: acc stays in registers
            if (t < nq) {
#pragma unroll
                for (int u = 0; u < kN; ++u)
                    acc_s[(group * nq + t) * D + piece * kN + u] = acc[t][u];
            }
        }
    }
    __syncthreads();

    // ---- write the chunk's partial (merged with the caller's state for one split) ----
    for (int i = tid; i < nq * D; i += kThreads) {
        const int t = i / D, d = i - t * D;
        float o = 0.f;
        for (int g = 0; g < groups; ++g) o += acc_s[(g * nq + t) * D + d];
        const float mc = stat_m[t];
        if (out != nullptr && splits == 1) {
            // attn_one_store: the partial starts empty, so the fold below would give o and lc
            // as they are; attn_partial_finalize's arithmetic on them.
            const float L = mc == kNegInf ? 0.f : stat_l[t];
            store_out(out, out_dt, t * out_stride + h * D + d, L > 0.f ? o * (1.0f / L) : 0.f);
            continue;
        }
        float* st = attn::state_row(part, scratch, splits, split, H, T, h, t, D);
        if (splits > 1) {
            st[d] = mc == kNegInf ? 0.f : o;
            continue;
        }
        // One split: fold into the state already in part (its m, l are read below by d == 0
        // only after every thread has read them: the row's o, m, l update happens at once).
        const float m0 = st[D];
        const float M = fmaxf(m0, mc);
        if (M == kNegInf) continue;  // nothing visible anywhere: the state stays
        const float w0 = m0 == kNegInf ? 0.f : expf(m0 - M);
        const float wc = mc == kNegInf ? 0.f : expf(mc - M);
        // Which product an `a * b + c * d` fuses is the compiler's choice, and may differ
        // between this kernel's instances: spelled out (nvcc 13's choice).
        st[d] = fmaf(st[d], w0, __fmul_rn(o, wc));
    }
    if (out != nullptr && splits == 1) return;  // written out above
    __syncthreads();  // every o of a row was updated with the old m before m changes
    if (tid < nq) {
        const int t = tid;
        float* st = attn::state_row(part, scratch, splits, split, H, T, h, t, D);
        const float mc = stat_m[t], lc = mc == kNegInf ? 0.f : stat_l[t];
        if (splits > 1) {
            st[D] = mc;
            st[D + 1] = lc;
        } else {
            const float m0 = st[D];
            const float M = fmaxf(m0, mc);
            if (M != kNegInf) {
                const float w0 = m0 == kNegInf ? 0.f : expf(m0 - M);
                const float wc = mc == kNegInf ? 0.f : expf(mc - M);
                st[D + 1] = fmaf(st[D + 1], w0, __fmul_rn(lc, wc));
                st[D] = M;
            }
        }
    }
    if (splits == 1) return;

    // ---- the head's last block to finish merges every split into part ----
    // (threadFenceReduction's pattern: publish the slice, then take a ticket; the block that
    // takes the last one sees every slice.) It re-arms the ticket for the next launch.
    __threadfence();
    __syncthreads();  // every thread's slice writes are fenced before the ticket
    if (tid == 0) last_block = atomicAdd(&tickets[h], 1u) == static_cast<unsigned>(splits - 1);
    __syncthreads();
    if (!last_block) return;
    __threadfence();
    // attn::merge_row's arithmetic, spread over the whole block: one warp per row walking the
    // splits one after another took ~0.5 ms per layer at 254 splits (128k memory; an H200,
    // 2026-11-30), a serial tail after the streaming. Here every thread owns one (row, dim) or
    // one row's l and walks the splits in order with its loads unrolled, so the sums keep
    // merge_row's order and bits. The partial already in part (not with out: it starts empty,
    // and merging it would change no bit) comes first, as merge_row's `first`.
    const int64_t slice = H * T * (D + 2);
    const bool fold_part = out == nullptr;
    for (int t = 0; t < nq; ++t) {
        const float* p0 = scratch + (h * T + t) * (D + 2) + D;
        float mx = kNegInf;
        for (int64_t r = tid; r < splits; r += kThreads) mx = fmaxf(mx, __ldcg(p0 + r * slice));
        mx = warp_max(mx);
        if (lane == 0) red[warp][t] = mx;
    }
    __syncthreads();
    if (tid < nq) {
        float mx = fold_part ? part[(h * T + tid) * (D + 2) + D] : kNegInf;
        for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, red[w][tid]);
        stat_m[tid] = mx;
    }
    __syncthreads();
    for (int i = tid; i < nq * (D + 1); i += kThreads) {  // e = D: the row's l
        const int t = i / (D + 1), d = i - t * (D + 1);
        const int e = d < D ? d : D + 1;
        const int64_t row = (h * T + t) * (D + 2);
        const float M = stat_m[t];
        float a = 0.f;
        if (M != kNegInf) {
            if (fold_part && part[row + D] != kNegInf) a += part[row + e] * expf(part[row + D] - M);
            const float* p = scratch + row;
#pragma unroll 8
            for (int64_t r = 0; r < splits; ++r) {
                const float m = __ldcg(p + r * slice + D), x = __ldcg(p + r * slice + e);
                if (m != kNegInf) a += x * expf(m - M);
            }
        }
        acc_s[i] = a;  // acc_s holds >= 2 x nq x D floats (pv_groups >= 2)
    }
    __syncthreads();
    for (int i = tid; i < nq * D; i += kThreads) {
        const int t = i / D, d = i - t * D;
        const float o = acc_s[t * (D + 1) + d], L = acc_s[t * (D + 1) + D];
        if (out != nullptr) {  // finalised as attn_partial_finalize does
            store_out(out, out_dt, t * out_stride + h * D + d, L > 0.f ? o * (1.0f / L) : 0.f);
        } else {
            part[(h * T + t) * (D + 2) + d] = o;
        }
    }
    if (tid < nq && out == nullptr) {
        float* st = part + (h * T + tid) * (D + 2);
        st[D] = stat_m[tid];
        st[D + 1] = acc_s[tid * (D + 1) + D];
    }
    if (tid == 0) tickets[h] = 0;
}

// FOT_CUDA_DECODE_PASSES, for benchmark comparisons: 2 runs one query with the general kernel
// (2 passes, registers for 8 queries); 8 with the one-query kernel (8 passes) but without
// staged value rows; 0 / unset: the default (one-query kernel, value rows staged when they
// fit). All give the same bits (each key's dot and each P.V sum is summed the same way).
int decode_variant() {
    static const int variant = [] {
        const char* e = std::getenv("FOT_CUDA_DECODE_PASSES");
        const std::string v = e ? e : "";
        if (v.empty() || v == "0") return 0;
        if (v == "2") return 2;
        if (v == "8") return 8;
        FOT_THROW("FOT_CUDA_DECODE_PASSES='", v, "' is not 0 (default), 2 or 8");
    }();
    return variant;
}

}  // namespace

bool attn_decode_supported(const void* k, const void* v, DType kv_dtype, int64_t kv_head_stride,
                           int64_t T, int64_t D) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v);
    const int64_t esz = static_cast<int64_t>(dtype_size(kv_dtype));
    return T >= 1 && T <= kMaxT && D >= 1 && D <= kMaxHeadDim && addr % 8 == 0 &&
           (D * esz) % 8 == 0 && (kv_head_stride * esz) % 8 == 0 &&
           (kv_dtype == DType::kF32 || kv_dtype == DType::kBF16 || kv_dtype == DType::kF16);
}

void attn_decode(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                 DType kv_dtype, int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D,
                 float scale, int64_t causal_offset, bool fast, int64_t splits, float* scratch,
                 unsigned* tickets, void* stream, void* out, DType out_dtype, int64_t out_stride) {
    FOT_CHECK(attn_decode_supported(k, v, kv_dtype, kv_head_stride, T, D),
              "cuda decode attention: unsupported shape or alignment (T ", T, ", head_dim ", D,
              ")");
    if (S <= 0 || T <= 0 || H <= 0) return;
    int out_dt = 0;
    if (out != nullptr) {
        FOT_CHECK(out_dtype == DType::kF32 || out_dtype == DType::kBF16 || out_dtype == DType::kF16,
                  "cuda decode attention: output dtype ", dtype_name(out_dtype));
        out_dt = out_dtype == DType::kBF16 ? 1 : out_dtype == DType::kF16 ? 2 : 0;
    }
    cudaStream_t st = as_stream(stream);
    const int d = static_cast<int>(D);
    const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(H));
    const int esz = static_cast<int>(dtype_size(kv_dtype));
    const int variant = decode_variant();
    const bool one = T == 1 && variant != 2;
    const bool stage_v =
        one && variant != 8 &&
        static_cast<size_t>(kChunk) * static_cast<size_t>(D * esz) <= kStageMaxBytes;
    const size_t smem = smem_bytes(T, D, esz, stage_v);
    dispatch_float_dtype(kv_dtype, "cuda decode attention keys/values", [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        auto launch = [&](auto kernel) {
            // Above 48 KiB (T = 8) the opt-in is needed; setting it per launch is cheap.
            FOT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(smem)));
            launch_pdl(kernel, grid, kThreads, smem, st, part, q, q_stride,
                       static_cast<const E*>(k), static_cast<const E*>(v), kv_head_stride, H, T, S,
                       d, scale, causal_offset, splits, scratch, tickets, out, out_dt, out_stride);
        };
        if (fast) {
            if (stage_v) {
                launch(decode_split_kernel<E, true, 4, 1, true>);
            } else if (one) {
                launch(decode_split_kernel<E, true, 8, 1, false>);
            } else {
                launch(decode_split_kernel<E, true, 2, kMaxT, false>);
            }
        } else {
            if (stage_v) {
                launch(decode_split_kernel<E, false, 4, 1, true>);
            } else if (one) {
                launch(decode_split_kernel<E, false, 8, 1, false>);
            } else {
                launch(decode_split_kernel<E, false, 2, kMaxT, false>);
            }
        }
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
