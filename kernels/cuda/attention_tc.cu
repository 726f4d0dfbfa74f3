// Tensor-core flash attention for the `fast` precision (runtime/core/precision.h): folds bf16
// keys/values [H, *, D] into the fp32 partials [H, T, D + 2] (o, m, l) exactly as the fp32
// kernels in attention.cu do, so merges across key splits and ranks are unchanged.
//
// One block = 64 queries of one head (4 warps x 16 rows) over one key split; keys and values
// stream through shared memory in tiles of 64 rows, double-buffered with cp.async (the next
// tile loads while this one computes). Per tile and warp:
//   S = Q K^T   mma.m16n8k16 (bf16 in, fp32 accumulate); Q stays in registers (A fragments
//               loaded once by ldmatrix), K fragments by ldmatrix from [key][d] rows
//   softmax     fp32 running max / sum per row (quad shuffles), masked only on tiles that cross
//               the causal diagonal or the end of the split
//   O += P V    P's fp32 accumulators become the bf16 A fragments in registers (the C layout
//               of two n-tiles is the A layout of one k-step); V fragments by ldmatrix.trans
// head_dim D is padded to DP (16, 32, 64, 112 or 128) inside shared memory only: pad columns
// are zeroed once, and cp.async copies D elements per row (16-, 8- or 4-byte pieces,
// whichever the row size allows), so D = 100 stores are read in place. Shared-memory rows
// are DP + 8 elements (a 16-byte skew) so ldmatrix reads are bank-conflict free.
// The warp-level instructions come from mma.cuh (emulated exactly in kernels/cuda/emu).
#include <cuda_runtime.h>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/ops.h"

namespace fot::kernels::cuda {
namespace {

constexpr int kTcQ = 64;  // queries per block: 4 warps x 16 rows
constexpr int kTcK = 64;  // keys per tile
constexpr int kTcThreads = 128;
static_assert(kTcQ == 16 * (kTcThreads / 32), "one 16-row mma tile per warp");

template <int DP>
struct TcShape {
    static_assert(DP % 16 == 0 && DP <= 128, "padded head dim");
    static constexpr int kLd = DP + 8;             // bf16 per shared-memory row
    static constexpr int kTile = kTcK * kLd;       // elements of one K or V stage
    static constexpr int kRows = kTcQ + 4 * kTcK;  // Q + 2 stages of K + 2 of V
    static constexpr size_t kSmemBytes = sizeof(uint16_t) * kRows * kLd;
};

// How this thread copies tiles: rows D elements long are cut into pieces of `chunk` bytes;
// thread t copies piece t % per_row of rows t / per_row, + rows_step, ... (set up once per
// kernel, so the per-tile loop has no division).
struct TileCopy {
    int chunk;     // bytes per cp.async: 16, 8 or 4
    int col;       // first element of this thread's piece
    int row0;      // first row
    int row_step;  // rows per pass of the block
    bool active;   // threads beyond rows_step * per_row copy nothing
};

__device__ __forceinline__ TileCopy tile_copy(int D, int chunk) {
    const int per_row = D * 2 / chunk;
    const int rows_step = kTcThreads / per_row;
    const int t = static_cast<int>(threadIdx.x);
    return {chunk, (t % per_row) * (chunk / 2), t / per_row, rows_step, t < rows_step * per_row};
}

// Issues the copies of rows [0, kTcK) of a tile (`valid` of them real, the rest zero-filled)
// into dst rows of `ld` elements.
template <int kChunk>
__device__ __forceinline__ void load_tile(uint16_t* dst, int ld, const uint16_t* src, int valid,
                                          int D, const TileCopy& tc) {
    if (!tc.active) return;
    for (int r = tc.row0; r < kTcK; r += tc.row_step) {
        const bool ok = r < valid;
        mma::cp_async<kChunk>(dst + r * ld + tc.col,
                              ok ? src + static_cast<int64_t>(r) * D + tc.col : src, ok);
    }
}

__device__ __forceinline__ void load_tile_any(uint16_t* dst, int ld, const uint16_t* src, int valid,
                                              int D, const TileCopy& tc) {
    if (tc.chunk == 16) {
        load_tile<16>(dst, ld, src, valid, D, tc);
    } else if (tc.chunk == 8) {
        load_tile<8>(dst, ld, src, valid, D, tc);
    } else {
        load_tile<4>(dst, ld, src, valid, D, tc);
    }
}

template <int DP>
__global__ void __launch_bounds__(kTcThreads)
    attn_tc_kernel(float* part, const float* __restrict__ q, int64_t q_stride,
                   const uint16_t* __restrict__ k, const uint16_t* __restrict__ v,
                   int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int D, float scale,
                   int64_t causal_offset, int64_t splits, float* scratch, int chunk) {
    using Sh = TcShape<DP>;
    constexpr int kLd = Sh::kLd;
    constexpr int kKs = DP / 16;  // k-steps of Q.K^T
    constexpr int kNt = DP / 8;   // n-tiles of O
    extern __shared__ uint4 smem_tc[];
    uint16_t* Qs = reinterpret_cast<uint16_t*>(smem_tc);  // [kTcQ][kLd]
    uint16_t* Ks = Qs + kTcQ * kLd;                       // [2][kTcK][kLd]
    uint16_t* Vs = Ks + 2 * Sh::kTile;                    // [2][kTcK][kLd]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, c4 = lane & 3;
    const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kTcQ;
    const int64_t h = blockIdx.y, split = blockIdx.z;
    const int64_t t_last = min64(T, t0 + kTcQ) - 1;
    const attn::KeyRange kr = attn::split_range(S, t_last, causal_offset, split, splits, kTcK);
    const bool causal = causal_offset < S;
    const int n_tiles = static_cast<int>((kr.ke - kr.kb + kTcK - 1) / kTcK);
    const uint16_t* kh = k + h * kv_head_stride;
    const uint16_t* vh = v + h * kv_head_stride;
    const TileCopy tcopy = tile_copy(D, chunk);

    // Tile 0 starts loading first; the pad columns and the query tile are written meanwhile.
    if (n_tiles > 0) {
        const int valid = static_cast<int>(min64(kTcK, kr.ke - kr.kb));
        load_tile_any(Ks, kLd, kh + kr.kb * D, valid, D, tcopy);
        load_tile_any(Vs, kLd, vh + kr.kb * D, valid, D, tcopy);
    }
    mma::cp_async_commit();
    if (D < DP) {
        const int pad = kLd - D;
        for (int i = tid; i < Sh::kRows * pad; i += kTcThreads) {
            const int r = i / pad;
            Qs[r * kLd + D + (i - r * pad)] = 0;  // rows of Q, K and V stages are contiguous
        }
    }
    for (int i = tid; i < kTcQ * D; i += kTcThreads) {
        const int r = i / D, d = i - r * D;
        const int64_t t = t0 + r;
        Qs[r * kLd + d] = t < T ? f32_to_bf16_bits(q[t * q_stride + h * D + d]) : 0;
    }

    // Softmax state and output of this lane's two rows (g and g + 8 of the warp's 16). Inside
    // the kernel scores and m are in log2 units (x = s * scale * log2 e, p = 2^(x - m): one
    // multiply and ex2 per score); the partial stores m in natural units like every kernel.
    constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
    const float scale_log2 = scale * kLog2e;
    const int64_t row0 = t0 + warp * 16 + g, row1 = row0 + 8;
    float m[2] = {kNegInf, kNegInf}, l[2] = {0.f, 0.f};
    float o[kNt][4];
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
    if (splits == 1) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int64_t t = r == 0 ? row0 : row1;
            if (t >= T) continue;
            const float* st = part + (h * T + t) * (D + 2);
            m[r] = st[D] * kLog2e;  // -inf stays -inf
            l[r] = st[D + 1];
#pragma unroll
            for (int nt = 0; nt < kNt; ++nt) {
                const int d = nt * 8 + 2 * c4;
                if (d < D) o[nt][2 * r] = st[d];
                if (d + 1 < D) o[nt][2 * r + 1] = st[d + 1];
            }
        }
    }
    __syncthreads();  // Qs and the pad columns are written

    uint32_t qf[kKs][4];
#pragma unroll
    for (int ks = 0; ks < kKs; ++ks) {
        const int mi = lane >> 3;
        mma::ldmatrix_x4(
            qf[ks], Qs + (warp * 16 + (mi & 1) * 8 + (lane & 7)) * kLd + ks * 16 + (mi >> 1) * 8);
    }

    for (int it = 0; it < n_tiles; ++it) {
        const int64_t j0 = kr.kb + static_cast<int64_t>(it) * kTcK;
        const int stage = it & 1;
        __syncthreads();  // every warp is done with the stage the next tile overwrites
        if (it + 1 < n_tiles) {
            const int64_t j1 = j0 + kTcK;
            const int valid = static_cast<int>(min64(kTcK, kr.ke - j1));
            load_tile_any(Ks + (stage ^ 1) * Sh::kTile, kLd, kh + j1 * D, valid, D, tcopy);
            load_tile_any(Vs + (stage ^ 1) * Sh::kTile, kLd, vh + j1 * D, valid, D, tcopy);
        }
        mma::cp_async_commit();
        mma::cp_async_wait<1>();  // this thread's copies of tile `it` are done
        __syncthreads();          // ... and everyone's
        const uint16_t* Kt = Ks + stage * Sh::kTile;
        const uint16_t* Vt = Vs + stage * Sh::kTile;

        // ---- S = Q K^T (16 x 64 per warp) ----
        float s[kTcK / 8][4];
#pragma unroll
        for (int nt = 0; nt < kTcK / 8; ++nt) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
            const uint16_t* krow = Kt + (nt * 8 + (lane & 7)) * kLd;
#pragma unroll
            for (int ks = 0; ks < kKs; ks += 2) {
                if (ks + 1 < kKs) {
                    uint32_t b[4];
                    mma::ldmatrix_x4(b, krow + ks * 16 + (lane >> 3) * 8);
                    mma::mma_bf16_16816(s[nt], qf[ks], b);
                    mma::mma_bf16_16816(s[nt], qf[ks + 1], b + 2);
                } else {
                    uint32_t b[2];
                    mma::ldmatrix_x2(b, krow + ks * 16 + ((lane >> 3) & 1) * 8);
                    mma::mma_bf16_16816(s[nt], qf[ks], b);
                }
            }
        }

        // ---- online softmax (fp32) ----
        const int64_t warp_t0 = t0 + warp * 16;
        const bool masked =
            j0 + kTcK > kr.ke || (causal && j0 + kTcK - 1 > warp_t0 + causal_offset);
        float mt[2] = {kNegInf, kNegInf};
#pragma unroll
        for (int nt = 0; nt < kTcK / 8; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float x = s[nt][e] * scale_log2;  // scores in log2 units: p = 2^(x - m)
                if (masked) {
                    const int64_t j = j0 + nt * 8 + 2 * c4 + (e & 1);
                    const int64_t t = e < 2 ? row0 : row1;
                    if (j >= kr.ke || (causal && j > t + causal_offset)) x = kNegInf;
                }
                s[nt][e] = x;
                mt[e >> 1] = fmaxf(mt[e >> 1], x);
            }
        }
        float corr[2], mn[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mt[r] = warp_max<4>(mt[r]);
            mn[r] = fmaxf(m[r], mt[r]);
            corr[r] = (m[r] == kNegInf || mn[r] == kNegInf) ? 0.f : fast_exp2(m[r] - mn[r]);
        }
        float rs[2] = {0.f, 0.f};
#pragma unroll
        for (int nt = 0; nt < kTcK / 8; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float x = s[nt][e];
                const float p = x == kNegInf ? 0.f : fast_exp2(x - mn[e >> 1]);
                s[nt][e] = p;
                rs[e >> 1] += p;
            }
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            rs[r] = warp_sum<4>(rs[r]);
            if (mn[r] != kNegInf) {
                m[r] = mn[r];
                l[r] = l[r] * corr[r] + rs[r];
            } else {
                corr[r] = 1.f;  // nothing visible yet: the state stays as it is
            }
        }
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt) {
            o[nt][0] *= corr[0];
            o[nt][1] *= corr[0];
            o[nt][2] *= corr[1];
            o[nt][3] *= corr[1];
        }

        // ---- O += P V ----
#pragma unroll
        for (int kk = 0; kk < kTcK / 16; ++kk) {
            const uint32_t a[4] = {mma::pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                                   mma::pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                   mma::pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   mma::pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            const int mi = lane >> 3;
            const uint16_t* vrow = Vt + (kk * 16 + (mi & 1) * 8 + (lane & 7)) * kLd + (mi >> 1) * 8;
#pragma unroll
            for (int nt = 0; nt < kNt; nt += 2) {
                uint32_t b[4];
                mma::ldmatrix_x4_trans(b, vrow + nt * 8);
                mma::mma_bf16_16816(o[nt], a, b);
                mma::mma_bf16_16816(o[nt + 1], a, b + 2);
            }
        }
    }
    mma::cp_async_wait<0>();

    // Write back (a split with no keys still writes its empty partial).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int64_t t = r == 0 ? row0 : row1;
        if (t >= T) continue;
        float* st = attn::state_row(part, scratch, splits, split, H, T, h, t, D);
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt) {
            const int d = nt * 8 + 2 * c4;
            if (d < D) st[d] = o[nt][2 * r];
            if (d + 1 < D) st[d + 1] = o[nt][2 * r + 1];
        }
        if (c4 == 0) {
            st[D] = m[r] * kLn2;
            st[D + 1] = l[r];
        }
    }
}

template <int DP>
void launch(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
            int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int D, float scale,
            int64_t causal_offset, int64_t splits, float* scratch, int chunk, cudaStream_t stream) {
    const size_t smem = TcShape<DP>::kSmemBytes;
    FOT_CUDA_CHECK(cudaFuncSetAttribute(
        attn_tc_kernel<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const dim3 grid(static_cast<unsigned>((T + kTcQ - 1) / kTcQ), static_cast<unsigned>(H),
                    static_cast<unsigned>(splits));
    attn_tc_kernel<DP><<<grid, kTcThreads, smem, stream>>>(
        part, q, q_stride, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v),
        kv_head_stride, H, T, S, D, scale, causal_offset, splits, scratch, chunk);
}

// Bytes per cp.async for rows of D bf16 at a head stride of kv_head_stride elements from
// k/v: the largest of 16, 8, 4 that every row start is aligned to; 0 when none is.
int copy_chunk(const void* k, const void* v, int64_t kv_head_stride, int64_t D) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v);
    for (int chunk : {16, 8, 4}) {
        if (addr % chunk == 0 && (D * 2) % chunk == 0 && (kv_head_stride * 2) % chunk == 0)
            return chunk;
    }
    return 0;
}

}  // namespace

bool attn_accumulate_tc_supported(const void* k, const void* v, DType kv_dtype,
                                  int64_t kv_head_stride, int64_t D) {
    return kv_dtype == DType::kBF16 && D >= 1 && D <= kMaxHeadDim &&
           copy_chunk(k, v, kv_head_stride, D) != 0;
}

void attn_accumulate_tc(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                        int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D,
                        float scale, int64_t causal_offset, int64_t splits, float* scratch,
                        void* stream) {
    const int chunk = copy_chunk(k, v, kv_head_stride, D);
    FOT_CHECK(chunk != 0 && D >= 1 && D <= kMaxHeadDim,
              "cuda tensor-core attention: unsupported head_dim ", D, " or alignment");
    if (S <= 0 || T <= 0 || H <= 0) return;
    cudaStream_t st = as_stream(stream);
    const int d = static_cast<int>(D);
    if (D <= 16) {
        launch<16>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale, causal_offset,
                   splits, scratch, chunk, st);
    } else if (D <= 32) {
        launch<32>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale, causal_offset,
                   splits, scratch, chunk, st);
    } else if (D <= 64) {
        launch<64>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale, causal_offset,
                   splits, scratch, chunk, st);
    } else if (D <= 112) {
        launch<112>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale, causal_offset,
                    splits, scratch, chunk, st);
    } else {
        launch<128>(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale, causal_offset,
                    splits, scratch, chunk, st);
    }
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
