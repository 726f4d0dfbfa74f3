// Attention partials [H, T, D + 2] (o, m, l) on the GPU: init, accumulate over a key/value
// store with an online softmax, merge, finalize. Two accumulate kernels:
//  - tiled_kernel (T > 8: prefill windows): one block per (64-query tile, head, key split);
//    keys and values stream through shared memory 32 at a time; S = Q.K^T and O += P.V are
//    fp32 register-tiled products (tile.cuh); the softmax state lives in registers.
//  - decode_kernel (T <= 8: generation): one block per (8-query group, head, key split); one
//    thread per output dim, scores by one warp per query, so a single query still reads each
//    key once; many splits keep every multiprocessor streaming (flash-decoding).
// With several key splits each split writes a fresh partial into scratch and merge_kernel
// folds them into the caller's partial in key order. fp32 throughout (no tensor cores): the
// results match the CPU reference to float rounding; a bf16 tensor-core version is future work
// (docs/cuda.md).
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/tile.cuh"

namespace fot::kernels::cuda {
namespace {

using attn::KeyRange;
using attn::split_range;
using attn::state_row;
using tile::kLdK;
using tile::kLdQ;
using tile::kTileK;
using tile::kTileQ;
using tile::kTileThreads;

constexpr int kDecodeQ = kAttnDecodeMaxT;  // queries per decode block
constexpr int kDecodeK = 32;               // keys per decode tile
constexpr int kDecodeThreads = 128;        // >= kMaxHeadDim: one thread per output dim
static_assert(kDecodeThreads >= kMaxHeadDim, "decode kernel: one thread per dim");

// ---------------------------------------------------------------------------------------------
template <typename E, int DP, bool kFast>
__global__ void __launch_bounds__(kTileThreads)
    tiled_kernel(float* part, const float* __restrict__ q, int64_t q_stride,
                 const E* __restrict__ k, const E* __restrict__ v, int64_t kv_head_stride,
                 int64_t H, int64_t T, int64_t S, int D, float scale, int64_t causal_offset,
                 int64_t splits, float* scratch) {
    extern __shared__ float4 smem4[];
    float* Qs = reinterpret_cast<float*>(smem4);  // [DP][kLdQ]
    float* Ks = Qs + DP * kLdQ;                   // [DP][kLdK]
    float* Vs = Ks + DP * kLdK;                   // [kTileK][DP]
    float* Ps = Vs + kTileK * DP;                 // [kTileK][kLdQ]
    constexpr int kJ = DP / 32;                   // float4 groups of dims per thread

    const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kTileQ;
    const int64_t h = blockIdx.y, split = blockIdx.z;
    const int tid = threadIdx.x, tq = tid / 8, tk = tid % 8;
    const int64_t t_last = min64(T, t0 + kTileQ) - 1;
    const KeyRange kr = split_range(S, t_last, causal_offset, split, splits, kTileK);
    const bool causal = causal_offset < S;

    // Softmax state and output accumulators of this thread's 4 queries (dims jj*32 + tk*4 + e).
    float m[4], l[4], acc[4][kJ][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int64_t t = t0 + tq * 4 + i;
        m[i] = kNegInf;
        l[i] = 0.f;
        const float* st = t < T ? state_row(part, scratch, splits, split, H, T, h, t, D) : nullptr;
        const bool load = st != nullptr && splits == 1;
        if (load) {
            m[i] = st[D];
            l[i] = st[D + 1];
        }
#pragma unroll
        for (int jj = 0; jj < kJ; ++jj) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int d = jj * 32 + tk * 4 + e;
                acc[i][jj][e] = (load && d < D) ? st[d] : 0.f;
            }
        }
    }

    tile::load_query_tile<kFast>(Qs, q, q_stride, h, t0, T, D);
    const E* kh = k + h * kv_head_stride;
    const E* vh = v + h * kv_head_stride;

    for (int64_t j0 = kr.kb; j0 < kr.ke; j0 += kTileK) {
        const int nk = static_cast<int>(min64(kTileK, kr.ke - j0));
        __syncthreads();  // previous tile's Ks/Vs/Ps are no longer read
        tile::load_rows<E, true, kFast>(Ks, kLdK, kh + j0 * D, nk, D);
        tile::load_rows<E, false, kFast>(Vs, DP, vh + j0 * D, nk, D);
        __syncthreads();

        float s[4][4];
        tile::qk_microtile(Qs, Ks, D, tq, tk, s);

        // Online softmax over this tile, row by row (8 lanes share a row).
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int64_t t = t0 + tq * 4 + i;
            float mt = kNegInf;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int jl = tk * 4 + c;
                const int64_t j = j0 + jl;
                const bool visible = jl < nk && (!causal || j <= t + causal_offset);
                s[i][c] = visible ? s[i][c] * scale : kNegInf;
                mt = fmaxf(mt, s[i][c]);
            }
            mt = warp_max<8>(mt);
            const float m_new = fmaxf(m[i], mt);
            const float corr = (m[i] == kNegInf) ? 0.f : expf(m[i] - m_new);
            float rs = 0.f;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const float p = (s[i][c] == kNegInf) ? 0.f : expf(s[i][c] - m_new);
                s[i][c] = p;
                rs += p;
            }
            rs = warp_sum<8>(rs);
            if (m_new != kNegInf) {
                m[i] = m_new;
                l[i] = l[i] * corr + rs;
#pragma unroll
                for (int jj = 0; jj < kJ; ++jj) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[i][jj][e] *= corr;
                }
            }
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            // fast: l summed the fp32 p above; the P.V operand is p rounded to bf16.
            auto pv = [](float p) { return kFast ? attn::round_bf16(p) : p; };
            *reinterpret_cast<float4*>(Ps + (tk * 4 + c) * kLdQ + tq * 4) =
                make_float4(pv(s[0][c]), pv(s[1][c]), pv(s[2][c]), pv(s[3][c]));
        }
        __syncthreads();

        // O += P . V over the nk valid keys (rows >= nk of Vs are stale: never read).
        for (int kk = 0; kk < nk; ++kk) {
            const float4 p4 = *reinterpret_cast<const float4*>(Ps + kk * kLdQ + tq * 4);
            const float pv[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
            for (int jj = 0; jj < kJ; ++jj) {
                const float4 v4 = *reinterpret_cast<const float4*>(Vs + kk * DP + jj * 32 + tk * 4);
                const float vv[4] = {v4.x, v4.y, v4.z, v4.w};
#pragma unroll
                for (int i = 0; i < 4; ++i) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[i][jj][e] = fmaf(pv[i], vv[e], acc[i][jj][e]);
                }
            }
        }
    }

    // Write back (a split with no keys still writes its empty partial).
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int64_t t = t0 + tq * 4 + i;
        if (t >= T) continue;
        float* st = state_row(part, scratch, splits, split, H, T, h, t, D);
#pragma unroll
        for (int jj = 0; jj < kJ; ++jj) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int d = jj * 32 + tk * 4 + e;
                if (d < D) st[d] = acc[i][jj][e];
            }
        }
        if (tk == 0) {
            st[D] = m[i];
            st[D + 1] = l[i];
        }
    }
}

// ---------------------------------------------------------------------------------------------
template <typename E, bool kFast>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_kernel(float* part, const float* __restrict__ q, int64_t q_stride,
                  const E* __restrict__ k, const E* __restrict__ v, int64_t kv_head_stride,
                  int64_t H, int64_t T, int64_t S, int D, float scale, int64_t causal_offset,
                  int64_t splits, float* scratch) {
    constexpr int kLdKMax = kMaxHeadDim + 1;
    __shared__ float Qs[kDecodeQ][kMaxHeadDim];
    __shared__ float Ks[kDecodeK * kLdKMax];  // [key][ldk], ldk odd: conflict-free dot reads
    __shared__ float Vs[kDecodeK * kMaxHeadDim];
    __shared__ float Ss[kDecodeQ][kDecodeK];
    __shared__ float ms[kDecodeQ], ls[kDecodeQ], cs[kDecodeQ];

    const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kDecodeQ;
    const int64_t h = blockIdx.y, split = blockIdx.z;
    const int nq = static_cast<int>(min64(kDecodeQ, T - t0));
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int ldk = D | 1;
    const bool causal = causal_offset < S;
    const KeyRange kr = split_range(S, t0 + nq - 1, causal_offset, split, splits, kDecodeK);

    float acc[kDecodeQ];
#pragma unroll
    for (int qi = 0; qi < kDecodeQ; ++qi) {
        acc[qi] = 0.f;
        if (qi < nq && splits == 1 && tid < D) acc[qi] = part[(h * T + t0 + qi) * (D + 2) + tid];
    }
    if (tid < kDecodeQ) {
        ms[tid] = kNegInf;
        ls[tid] = 0.f;
        if (tid < nq && splits == 1) {
            const float* st = part + (h * T + t0 + tid) * (D + 2);
            ms[tid] = st[D];
            ls[tid] = st[D + 1];
        }
    }
    for (int i = tid; i < nq * D; i += blockDim.x) {
        const int qi = i / D, d = i - qi * D;
        const float x = q[(t0 + qi) * q_stride + h * D + d];
        Qs[qi][d] = kFast ? attn::round_bf16(x) : x;
    }
    const E* kh = k + h * kv_head_stride;
    const E* vh = v + h * kv_head_stride;

    for (int64_t j0 = kr.kb; j0 < kr.ke; j0 += kDecodeK) {
        const int nk = static_cast<int>(min64(kDecodeK, kr.ke - j0));
        __syncthreads();
        tile::load_rows<E, false, kFast>(Ks, ldk, kh + j0 * D, nk, D);
        tile::load_rows<E, false, kFast>(Vs, D, vh + j0 * D, nk, D);
        __syncthreads();

        // Scores: warp w takes queries w and w + 4, lane = key.
#pragma unroll
        for (int r = 0; r < kDecodeQ / 4; ++r) {
            const int qi = warp + 4 * r;
            if (qi >= nq) continue;
            float s = kNegInf;
            const int64_t j = j0 + lane;
            if (lane < nk && (!causal || j <= t0 + qi + causal_offset)) {
                float dot = 0.f;
                const float* kr_ = Ks + lane * ldk;
                for (int d = 0; d < D; ++d) dot = fmaf(Qs[qi][d], kr_[d], dot);
                s = dot * scale;
            }
            const float mt = warp_max(s);
            const float m_old = ms[qi];
            const float m_new = fmaxf(m_old, mt);
            const float corr = (m_old == kNegInf) ? 0.f : expf(m_old - m_new);
            const float p = (s == kNegInf) ? 0.f : expf(s - m_new);
            const float rs = warp_sum(p);
            Ss[qi][lane] = kFast ? attn::round_bf16(p) : p;  // fast: bf16 P.V operand
            __syncwarp();
            if (lane == 0) {
                if (m_new != kNegInf) {
                    ms[qi] = m_new;
                    ls[qi] = ls[qi] * corr + rs;
                    cs[qi] = corr;
                } else {
                    cs[qi] = 1.f;
                }
            }
        }
        __syncthreads();

        if (tid < D) {
#pragma unroll
            for (int qi = 0; qi < kDecodeQ; ++qi) {
                if (qi >= nq) continue;
                float a = acc[qi] * cs[qi];
                for (int kk = 0; kk < nk; ++kk) a = fmaf(Ss[qi][kk], Vs[kk * D + tid], a);
                acc[qi] = a;
            }
        }
    }
    __syncthreads();

#pragma unroll
    for (int qi = 0; qi < kDecodeQ; ++qi) {
        if (qi >= nq) continue;
        float* st = state_row(part, scratch, splits, split, H, T, h, t0 + qi, D);
        if (tid < D) st[tid] = acc[qi];
        if (tid == 0) {
            st[D] = ms[qi];
            st[D + 1] = ls[qi];
        }
    }
}

// ---------------------------------------------------------------------------------------------
__global__ void init_kernel(float* part, int64_t rows, int64_t D) {
    pdl_start();
    const int64_t n = rows * (D + 2);
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) {
        const int64_t c = i % (D + 2);
        part[i] = c == D ? kNegInf : 0.f;
    }
}

// One warp per row: out = merge(first (optional), parts[0..R)) in that order, as the CPU
// attn_partial_merge. out may alias first or parts[0]: each lane reads the dims it writes,
// and m/l are written after every lane has read them.
__global__ void merge_kernel(float* out, const float* first, const float* parts, int64_t R,
                             int64_t rows, int64_t D) {
    pdl_start();
    const int lane = threadIdx.x & 31;
    const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
    const int64_t row = D + 2;
    for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; i < rows;
         i += warps) {
        attn::merge_row(out + i * row, first ? first + i * row : nullptr, parts + i * row, R,
                        rows * row, D, lane);
    }
}

template <typename O>
__global__ void finalize_kernel(O* out, int64_t out_stride, const float* part, int64_t H, int64_t T,
                                int64_t D) {
    pdl_start();
    const int64_t n = T * H * D;
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) {
        const int64_t d = i % D, th = i / D, h = th % H, t = th / H;
        const float* p = part + (h * T + t) * (D + 2);
        const float L = p[D + 1];
        out[t * out_stride + h * D + d] = from_f32<O>(L > 0.f ? p[d] * (1.0f / L) : 0.f);
    }
}

template <int DP>
size_t tiled_smem_bytes() {
    return sizeof(float) * (DP * kLdQ + DP * kLdK + kTileK * DP + kTileK * kLdQ);
}

template <typename E, int DP, bool kFast>
void launch_tiled(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                  int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int D, float scale,
                  int64_t causal_offset, int64_t splits, float* scratch, cudaStream_t stream) {
    const size_t smem = tiled_smem_bytes<DP>();
    // The opt-in above 48 KiB is per kernel and per device; setting it every launch is cheap.
    FOT_CUDA_CHECK(cudaFuncSetAttribute(tiled_kernel<E, DP, kFast>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
    const dim3 grid(static_cast<unsigned>((T + kTileQ - 1) / kTileQ), static_cast<unsigned>(H),
                    static_cast<unsigned>(splits));
    tiled_kernel<E, DP, kFast><<<grid, kTileThreads, smem, stream>>>(
        part, q, q_stride, static_cast<const E*>(k), static_cast<const E*>(v), kv_head_stride, H, T,
        S, D, scale, causal_offset, splits, scratch);
}

template <typename E, bool kFast>
void launch_fp32(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                 int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int d, float scale,
                 int64_t causal_offset, int64_t splits, float* scratch, cudaStream_t st) {
    if (T <= kDecodeQ) {
        const dim3 grid(1, static_cast<unsigned>(H), static_cast<unsigned>(splits));
        decode_kernel<E, kFast><<<grid, kDecodeThreads, 0, st>>>(
            part, q, q_stride, static_cast<const E*>(k), static_cast<const E*>(v), kv_head_stride,
            H, T, S, d, scale, causal_offset, splits, scratch);
    } else if (d <= 32) {
        launch_tiled<E, 32, kFast>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale,
                                   causal_offset, splits, scratch, st);
    } else if (d <= 64) {
        launch_tiled<E, 64, kFast>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale,
                                   causal_offset, splits, scratch, st);
    } else {
        launch_tiled<E, 128, kFast>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale,
                                    causal_offset, splits, scratch, st);
    }
}

}  // namespace

void attn_partial_init(float* part, int64_t H, int64_t T, int64_t D, void* stream) {
    const int64_t n = H * T * (D + 2);
    if (n <= 0) return;
    launch_pdl(init_kernel, grid_for(n, 256), 256, 0, as_stream(stream), part, H * T, D);
    FOT_CUDA_CHECK(cudaGetLastError());
}

int64_t attn_accumulate_splits(int64_t H, int64_t T, int64_t S, int64_t D, int64_t causal_offset,
                               int sm_count, int64_t block_queries) {
    if (S <= 0 || T <= 0 || H <= 0) return 1;
    const bool decode = T <= kDecodeQ;
    const int64_t bq = std::max<int64_t>(1, block_queries);
    const int64_t q_tiles = decode ? (T + kDecodeQ - 1) / kDecodeQ : (T + bq - 1) / bq;
    const int64_t blocks = H * q_tiles;
    // Roughly the blocks that run at once: tiled blocks use up to 87 KiB of shared memory.
    const int64_t target = static_cast<int64_t>(std::max(sm_count, 1)) * 2;
    int64_t keys = S;
    if (causal_offset < S) keys = std::max<int64_t>(0, std::min(S, T + causal_offset));
    if (decode) {
        // attention_decode.cu: chunks of at most kDecodeChunk keys, and enough blocks for ~4
        // per SM when there are that many chunks of >= 128 keys.
        const int64_t need = (keys + kDecodeChunk - 1) / kDecodeChunk;
        const int64_t want = (4 * static_cast<int64_t>(std::max(sm_count, 1)) + H - 1) / H;
        const int64_t by_keys = std::max<int64_t>(1, (keys + 127) / 128);
        return std::min<int64_t>(65535, std::max({need, std::min(want, by_keys), int64_t{1}}));
    }
    if (blocks >= target) return 1;
    const int64_t by_keys = std::max<int64_t>(1, keys / (8 * kTileK));  // >= 8 tiles per split
    const int64_t want = (target + blocks - 1) / blocks;
    return std::max<int64_t>(1, std::min<int64_t>({want, by_keys, int64_t{64}}));
}

namespace {
// Whether attn_accumulate runs the decode kernel for this shape (T <= 8, chunks of at most
// kDecodeChunk keys, a store it reads).
bool takes_decode(const void* k, const void* v, DType kv_dtype, int64_t kv_head_stride, int64_t T,
                  int64_t S, int64_t D, int64_t causal_offset, int64_t splits) {
    int64_t keys = S;
    if (causal_offset < S) keys = std::max<int64_t>(0, std::min(S, T + causal_offset));
    const int64_t chunk = ((keys + splits - 1) / splits + 31) / 32 * 32;
    return T <= kDecodeQ && chunk <= kDecodeChunk &&
           attn_decode_supported(k, v, kv_dtype, kv_head_stride, T, D);
}
}  // namespace

bool attn_one_store_supported(DType out_dtype, const void* k, const void* v, DType kv_dtype,
                              int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D,
                              int64_t causal_offset, int64_t splits) {
    return S >= 1 && T >= 1 && H >= 1 && H <= 65535 && splits >= 1 && splits <= 65535 &&
           (out_dtype == DType::kF32 || out_dtype == DType::kBF16 || out_dtype == DType::kF16) &&
           takes_decode(k, v, kv_dtype, kv_head_stride, T, S, D, causal_offset, splits);
}

void attn_one_store(void* out, DType out_dtype, int64_t out_stride, float* part, const float* q,
                    int64_t q_stride, const void* k, const void* v, DType kv_dtype,
                    int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D, float scale,
                    int64_t causal_offset, bool fast, int64_t splits, float* scratch,
                    unsigned* tickets, void* stream) {
    FOT_CHECK(attn_one_store_supported(out_dtype, k, v, kv_dtype, kv_head_stride, H, T, S, D,
                                       causal_offset, splits),
              "cuda attention: attn_one_store does not take this shape (T ", T, ", S ", S,
              ", head_dim ", D, ", ", splits, " splits)");
    FOT_CHECK(splits == 1 || (scratch != nullptr && tickets != nullptr), "cuda attention: ", splits,
              " decode key splits need scratch and tickets");
    attn_decode(part, q, q_stride, k, v, kv_dtype, kv_head_stride, H, T, S, D, scale, causal_offset,
                fast, splits, scratch, tickets, stream, out, out_dtype, out_stride);
}

void attn_accumulate(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                     DType kv_dtype, int64_t kv_head_stride, int64_t H, int64_t T, int64_t S,
                     int64_t D, float scale, int64_t causal_offset, bool fast, int64_t splits,
                     float* scratch, unsigned* tickets, void* stream) {
    FOT_CHECK(D >= 1 && D <= kMaxHeadDim, "cuda attention: head_dim ", D,
              " is not supported (1 .. ", kMaxHeadDim, ")");
    FOT_CHECK(splits >= 1 && splits <= 65535, "cuda attention: bad split count ", splits);
    FOT_CHECK(splits == 1 || scratch != nullptr, "cuda attention: ", splits,
              " key splits need scratch");
    FOT_CHECK(H <= 65535, "cuda attention: ", H, " heads exceed the grid limit");
    if (S <= 0 || T <= 0 || H <= 0) return;
    cudaStream_t st = as_stream(stream);
    const int d = static_cast<int>(D);
    if (fast && T > kDecodeQ &&
        attn_accumulate_tc_supported(k, v, kv_dtype, kv_head_stride, D, scale)) {
        attn_accumulate_tc(part, q, q_stride, k, v, kv_head_stride, H, T, S, D, scale,
                           causal_offset, splits, scratch, stream);
    } else if (takes_decode(k, v, kv_dtype, kv_head_stride, T, S, D, causal_offset, splits)) {
        // Its last block per head merges the splits: no merge launch.
        FOT_CHECK(splits == 1 || tickets != nullptr, "cuda attention: ", splits,
                  " decode key splits need tickets");
        attn_decode(part, q, q_stride, k, v, kv_dtype, kv_head_stride, H, T, S, D, scale,
                    causal_offset, fast, splits, scratch, tickets, stream);
        return;
    } else {
        dispatch_float_dtype(kv_dtype, "cuda attention keys/values", [&](auto* tag) {
            using E = std::remove_pointer_t<decltype(tag)>;
            if (fast) {
                launch_fp32<E, true>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale,
                                     causal_offset, splits, scratch, st);
            } else {
                launch_fp32<E, false>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale,
                                      causal_offset, splits, scratch, st);
            }
        });
    }
    FOT_CUDA_CHECK(cudaGetLastError());
    if (splits > 1) {
        const int64_t rows = H * T;
        launch_pdl(merge_kernel, grid_for(rows * 32, 256), 256, 0, st, part, part, scratch, splits,
                   rows, D);
        FOT_CUDA_CHECK(cudaGetLastError());
    }
}

void attn_partial_merge(float* out, const float* parts, int64_t R, int64_t H, int64_t T, int64_t D,
                        void* stream) {
    const int64_t rows = H * T;
    if (rows <= 0) return;
    launch_pdl(merge_kernel, grid_for(rows * 32, 256), 256, 0, as_stream(stream), out, nullptr,
               parts, R, rows, D);
    FOT_CUDA_CHECK(cudaGetLastError());
}

void attn_partial_finalize(void* out, DType out_dtype, int64_t out_stride, const float* part,
                           int64_t H, int64_t T, int64_t D, void* stream) {
    const int64_t n = H * T * D;
    if (n <= 0) return;
    dispatch_float_dtype(out_dtype, "cuda attn_partial_finalize output", [&](auto* tag) {
        using O = std::remove_pointer_t<decltype(tag)>;
        launch_pdl(finalize_kernel<O>, grid_for(n, 256), 256, 0, as_stream(stream),
                   static_cast<O*>(out), out_stride, part, H, T, D);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
