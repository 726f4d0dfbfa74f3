// The tensor-core flash-attention kernel of attention_tc.cu (its header comment says what it
// computes), as a template that two translation units instantiate: attention_tc.cu with
// mma.sync (kWg false, any sm_90 device) and attention_wgmma.cu with wgmma (kWg true: the
// warpgroup-level instructions of sm_90a; that file is compiled for sm_90a alone).
//
// With kWg the block is two warpgroups (8 warps, 128 queries, one m-tile per warp: the two
// share each K / V tile, which halves the shared-memory fill and L2 reads per FLOP) and:
//   S = Q K^T   7 x wgmma.m64n64k16 per warpgroup and 64-key tile at head_dim 100, Q and K
//               both read by the tensor cores from shared memory (no ldmatrix, and Q takes
//               no registers: ~125 of them leave room for two blocks per SM);
//   O += P V    4 x wgmma.m64nNk16 (N = 8 x n-tiles of O: 104 at head_dim 100), P's A
//               fragments in registers as with mma.sync, V read from shared memory (MN-major);
//   Q, K and V are stored as 8 x 8 "core matrices" (wgmma.cuh) instead of skewed rows, one
//   layout for all three: element (row r, dim c) at ((r / 8) x DP / 8 + c / 8) x 64 +
//   (r % 8) x 8 + c % 8. Every warp of a warpgroup takes part in its products (wgmma is a
//   warpgroup instruction): a warpgroup skips a tile only when none of its rows sees it.
// The softmax, the masks and the partial's reads and writes are the same code.
// Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace fot::kernels::cuda::attn_tc {

constexpr int kTcK = 64;  // keys per tile
constexpr int kTcThreads = 128;  // mma.sync blocks
constexpr int kTcWarps = kTcThreads / 32;
constexpr int kWgThreads = 256;  // wgmma blocks: two warpgroups
// Threads and warps of a block of either kind.
template <bool kWg>
constexpr int kBlockThreads = kWg ? kWgThreads : kTcThreads;
template <bool kWg>
constexpr int kBlockWarps = kBlockThreads<kWg> / 32;

// MT = 16-row m-tiles per warp: the block takes 64 x MT queries. kWg: K and V stages as core
// matrices (no skew; wgmma reads them).
template <int DP, int MT, bool kWg = false>
struct TcShape {
    static_assert(DP % 16 == 0 && DP <= 128, "padded head dim");
    static_assert(MT == 1 || MT == 2, "one or two m-tiles per warp");
    static_assert(!kWg || MT == 1, "a wgmma block is two warpgroups of 64 queries");
    static constexpr int kQ = 16 * MT * kBlockWarps<kWg>;  // queries per block
    static constexpr int kLd = DP + 8;                     // bf16 per row of Q (and skewed K / V)
    static constexpr int kTile = kTcK * (kWg ? DP : kLd);  // elements of one K or V stage
    static constexpr size_t kSmemBytes = sizeof(uint16_t) * (kQ * kLd + 4 * kTile);
};

// Where element (row r, column c) of a tile of 8-column groups `groups` lies in the core-matrix
// layout (wgmma.cuh): 64-element blocks of 8 rows x 8 columns, row-group major.
__device__ __forceinline__ int core_offset(int r, int c, int groups) {
    return ((r >> 3) * groups + (c >> 3)) * 64 + (r & 7) * 8 + (c & 7);
}

// Tile copies. A tile's rows [0, kTcK) (`valid` of them real, the rest zero-filled) are cut
// into pieces of kChunk bytes (16, 8 or 4: what the row length D x 2 allows); each thread
// issues the cp.async of rows r0 + kRowStride i and pieces p0 + kPieceStride j. The loops have
// compile-time trip counts: a row's pieces unroll into copies at constant offsets from one
// source and one destination pointer, which step by a row stride (with runtime-bounded loops
// and per-copy address arithmetic each 8-byte copy took 18-26 instructions, and at head_dim
// 100 a tile's copies cost more issue slots than its softmax). Only a split's last tile has
// rows past its keys (kPartial: predicated copies).
template <int kChunk, int kRowSteps, int kRowStride, int kDstRow, int kPieceSteps, int kPieceStride,
          int kDstPiece, bool kPartial>
__device__ __forceinline__ void copy_pieces(uint16_t* d0, const uint16_t* src, int r0, int p0,
                                            int valid, int D) {
    constexpr int kElems = kChunk / 2;
    const int pieces = D / kElems;
    const uint16_t* s = src + (r0 * D + p0 * kElems);  // offsets < kTcK x DP: 32 bits
    uint16_t* d = d0;
    // The row loop stays a loop: unrolled, ptxas keeps every row's address live across the
    // key loop, for each of the three chunk sizes (+40 registers at head_dim 32, spills at 64).
#pragma unroll 1
    for (int r = r0; r < r0 + kRowSteps * kRowStride; r += kRowStride) {
        const bool ok = !kPartial || r < valid;
#pragma unroll
        for (int j = 0; j < kPieceSteps; ++j) {
            if (p0 + kPieceStride * j >= pieces) break;
            mma::cp_async<kChunk>(d + j * kDstPiece, ok ? s + kPieceStride * kElems * j : src, ok);
        }
        s += kRowStride * D;
        d += kDstRow;
    }
}

template <int kChunk, int kRowSteps, int kRowStride, int kDstRow, int kPieceSteps, int kPieceStride,
          int kDstPiece>
__device__ __forceinline__ void copy_tile(uint16_t* d0, const uint16_t* src, int r0, int p0,
                                          int valid, int D) {
    if (valid == kTcK) {
        copy_pieces<kChunk, kRowSteps, kRowStride, kDstRow, kPieceSteps, kPieceStride, kDstPiece,
                    false>(d0, src, r0, p0, valid, D);
    } else {
        copy_pieces<kChunk, kRowSteps, kRowStride, kDstRow, kPieceSteps, kPieceStride, kDstPiece,
                    true>(d0, src, r0, p0, valid, D);
    }
}

constexpr int pow2_at_least(int n) {
    return n <= 1 ? 1 : 2 * pow2_at_least((n + 1) / 2);
}

// mma.sync stages: rows of kLd elements. kLanes consecutive threads copy consecutive pieces of
// a row (at chunk 8 and D 100, a half-warp reads 128 contiguous bytes and writes them to one
// row: no bank conflict beyond the two rows of a warp).
template <int DP, int kLd, int kChunk>
__device__ __forceinline__ void load_tile(uint16_t* dst, const uint16_t* src, int valid, int D) {
    constexpr int kElems = kChunk / 2, kMaxPieces = DP / kElems;
    constexpr int kLanes = kMaxPieces >= 16 ? 16 : pow2_at_least(kMaxPieces);
    constexpr int kRows = kTcThreads / kLanes;  // rows per pass of the block
    static_assert(kTcK % kRows == 0, "passes of whole rows");
    const int t = static_cast<int>(threadIdx.x), r0 = t / kLanes, p0 = t % kLanes;
    copy_tile<kChunk, kTcK / kRows, kRows, kRows * kLd, (kMaxPieces + kLanes - 1) / kLanes, kLanes,
              kLanes * kElems>(dst + r0 * kLd + p0 * kElems, src, r0, p0, valid, D);
}

template <int DP, int kLd>
__device__ __forceinline__ void load_tile_any(uint16_t* dst, const uint16_t* src, int valid, int D,
                                              int chunk) {
    if (chunk == 16) {
        load_tile<DP, kLd, 16>(dst, src, valid, D);
    } else if (chunk == 8) {
        load_tile<DP, kLd, 8>(dst, src, valid, D);
    } else {
        load_tile<DP, kLd, 4>(dst, src, valid, D);
    }
}

// wgmma stages: the core-matrix layout of DP / 8 column groups. Lane l of a warp copies row
// l % 8 of a row group, so a warp writes whole 16-byte rows of 4 core matrices at once (no
// bank conflict) and reads 8 row segments of 32 contiguous bytes. Thread t copies rows
// t % 8 + 8 (t / 128) + 16 i and pieces (t / 8) % 16 + 16 j.
template <int DP, int kChunk>
__device__ __forceinline__ void load_tile_wg(uint16_t* dst, const uint16_t* src, int valid, int D) {
    constexpr int kElems = kChunk / 2, kSets = kWgThreads / 128;
    const int t = static_cast<int>(threadIdx.x);
    const int r0 = (t >> 7) * 8 + (t & 7), p0 = (t >> 3) & 15;
    // Row + 8 kSets: kSets row groups on; piece + 16: 16 kElems / 8 column groups on.
    constexpr int kRowStride = 8 * kSets, kDstRow = kSets * (DP / 8) * 64;
    constexpr int kPieceSteps = (DP / kElems + 15) / 16, kDstPiece = 2 * kElems * 64;
    copy_tile<kChunk, kTcK / kRowStride, kRowStride, kDstRow, kPieceSteps, 16, kDstPiece>(
        dst + core_offset(r0, p0 * kElems, DP / 8), src, r0, p0, valid, D);
}

template <int DP>
__device__ __forceinline__ void load_tile_wg_any(uint16_t* dst, const uint16_t* src, int valid,
                                                 int D, int chunk) {
    if (chunk == 16) {
        load_tile_wg<DP, 16>(dst, src, valid, D);
    } else if (chunk == 8) {
        load_tile_wg<DP, 8>(dst, src, valid, D);
    } else {
        load_tile_wg<DP, 4>(dst, src, valid, D);
    }
}

// Where the rows go: the partial (data null), or finalized (o / l, as
// attn_partial_finalize) into out [T, stride] of `kind` (attn_one_store: the block then starts
// from the empty state and does not touch the partial; one split only).
struct TcOut {
    void* data;
    int64_t stride;
    int kind;  // 0 f32, 1 bf16, 2 f16
};

template <typename O>
__device__ __forceinline__ void store_finalized(O* out, float o, float L) {
    *out = from_f32<O>(L > 0.f ? o * (1.0f / L) : 0.f);
}

template <int DP, int MT, int NT, bool kWg = false>
__global__ void __launch_bounds__(kBlockThreads<kWg>, kWg ? 2 : 0)
    attn_tc_kernel(float* part, const float* __restrict__ q, int64_t q_stride,
                   const uint16_t* __restrict__ k, const uint16_t* __restrict__ v,
                   int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int D, float scale,
                   int64_t causal_offset, int64_t splits, float* scratch, int chunk, TcOut out) {
    using Sh = TcShape<DP, MT, kWg>;
    constexpr int kQ = Sh::kQ;
    constexpr int kLd = Sh::kLd;
    constexpr int kKs = DP / 16;  // k-steps of Q.K^T
    constexpr int kNt = NT;       // n-tiles of O: DP / 8, or one fewer when D fits
    static_assert(NT == DP / 8 || NT == DP / 8 - 1, "n-tiles of O");
    constexpr int kWarpRows = 16 * MT;
    static_assert(!kWg || NT * 8 == 64 || NT * 8 == 104 || NT * 8 == 128, "wgmma n of O");
    FOT_DYNAMIC_SMEM(uint4, smem_tc);
    uint16_t* Qs = reinterpret_cast<uint16_t*>(smem_tc);  // [kQ][kLd]
    uint16_t* Ks = Qs + kQ * kLd;                         // [2][kTcK][kLd]
    uint16_t* Vs = Ks + 2 * Sh::kTile;                    // [2][kTcK][kLd]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, c4 = lane & 3;
    // The last query blocks first: with a causal mask they see the most keys, so the longest
    // blocks start in the first wave instead of ending the grid alone.
    const int64_t t0 = static_cast<int64_t>(gridDim.x - 1 - blockIdx.x) * kQ;
    const int64_t h = blockIdx.y, split = blockIdx.z;
    const int64_t t_last = min64(T, t0 + kQ) - 1;
    const attn::KeyRange kr = attn::split_range(S, t_last, causal_offset, split, splits, kTcK);
    const bool causal = causal_offset < S;
    const int n_tiles = static_cast<int>((kr.ke - kr.kb + kTcK - 1) / kTcK);
    const uint16_t* kh = k + h * kv_head_stride;
    const uint16_t* vh = v + h * kv_head_stride;

    // Tile 0 starts loading first; the pad columns and the query tile are written meanwhile.
    if (n_tiles > 0) {
        const int valid = static_cast<int>(min64(kTcK, kr.ke - kr.kb));
        if constexpr (kWg) {
            load_tile_wg_any<DP>(Ks, kh + kr.kb * D, valid, D, chunk);
            load_tile_wg_any<DP>(Vs, vh + kr.kb * D, valid, D, chunk);
        } else {
            load_tile_any<DP, kLd>(Ks, kh + kr.kb * D, valid, D, chunk);
            load_tile_any<DP, kLd>(Vs, vh + kr.kb * D, valid, D, chunk);
        }
    }
    mma::cp_async_commit();
    if (D < DP) {
        if constexpr (kWg) {
            // Q (core matrices too: wgmma reads it) and the 4 K / V stages: columns D .. DP - 1
            // of each row.
            for (int r = tid; r < kQ; r += kWgThreads) {
                for (int c = D; c < DP; ++c) Qs[core_offset(r, c, DP / 8)] = 0;
            }
            for (int r = tid; r < 4 * kTcK; r += kWgThreads) {
                uint16_t* st = Ks + (r / kTcK) * Sh::kTile;
                for (int c = D; c < DP; ++c) st[core_offset(r % kTcK, c, DP / 8)] = 0;
            }
        } else {  // rows of Q, K and V stages are contiguous
            for (int r = tid; r < kQ + 4 * kTcK; r += kTcThreads) {
                for (int c = D; c < kLd; ++c) Qs[r * kLd + c] = 0;
            }
        }
    }
    // The query tile, a row per warp at a time (coalesced along d, no division).
    for (int r = warp; r < kQ; r += kBlockWarps<kWg>) {
        const int64_t t = t0 + r;
        const float* qr = q + t * q_stride + h * D;
        for (int d = lane; d < D; d += 32) {
            Qs[kWg ? core_offset(r, d, DP / 8) : r * kLd + d] = t < T ? f32_to_bf16_bits(qr[d]) : 0;
        }
    }

    // Softmax state and output of this lane's rows: g and g + 8 of each of the warp's m-tiles
    // (index [mt][r]). Inside the kernel m is in log2 units (p = 2^(s * scale * log2 e - m):
    // one FFMA and ex2 per score); the partial stores m in natural units like every kernel.
    constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
    const float scale_log2 = scale * kLog2e;
    const int64_t warp_t0 = t0 + warp * kWarpRows;
    // This lane's rows are g + off, off = 16 mt + 8 r; their states are (D + 2) floats apart
    // from st_g (the partial with one split, else this split's scratch slice), and rows
    // off >= rows_left are past T. One pointer and one count stay live through the key loop.
    const int64_t row_g = warp_t0 + g;
    const int rows_left = static_cast<int>(max64(0, min64(kWarpRows, T - row_g)));
    float* const st_g =
        out.data != nullptr
            ? nullptr
            : attn::state_row(part, scratch, splits, split, H, T, h, 0, D) + row_g * (D + 2);
    // Calls f(mt, r, off) for each of this lane's rows that is not past T.
    auto for_lane_rows = [&](auto&& f) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int off = mt * 16 + 8 * r;
                if (off < rows_left) f(mt, r, off);
            }
        }
    };
    float m[MT][2], l[MT][2];
    float o[MT][kNt][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        m[mt][0] = m[mt][1] = kNegInf;
        l[mt][0] = l[mt][1] = 0.f;
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt)
            o[mt][nt][0] = o[mt][nt][1] = o[mt][nt][2] = o[mt][nt][3] = 0.f;
    }
    if (splits == 1 && out.data == nullptr) {
        for_lane_rows([&](int mt, int r, int off) {
            const float* st = st_g + static_cast<int64_t>(off) * (D + 2);
            m[mt][r] = st[D] * kLog2e;  // -inf stays -inf
            l[mt][r] = st[D + 1];
#pragma unroll
            for (int nt = 0; nt < kNt; ++nt) {
                const int d = nt * 8 + 2 * c4;
                if (d < D) o[mt][nt][2 * r] = st[d];
                if (d + 1 < D) o[mt][nt][2 * r + 1] = st[d + 1];
            }
        });
    }
    // Qs and the pad columns are written (wgmma reads Q inside the key loop, after its
    // barriers: no barrier needed here).
    if constexpr (!kWg) __syncthreads();

    // The A fragments of Q (ldmatrix: matrix i / 8 of lane i is rows +0 / +8, columns +0 / +8).
    const int qmi = lane >> 3;
    const uint16_t* qrow =
        Qs + (warp * kWarpRows + (qmi & 1) * 8 + (lane & 7)) * kLd + (qmi >> 1) * 8;
    // One m-tile keeps its fragments in registers for the whole split; two would need 56 more
    // registers at DP 112 (ptxas spills), so they are re-read per tile and k-step (14
    // ldmatrix.x4 per 216 mma at head_dim 100).
    uint32_t qf[MT == 1 && !kWg ? kKs : 1][4];
    if constexpr (MT == 1 && !kWg) {
#pragma unroll
        for (int ks = 0; ks < kKs; ++ks) mma::ldmatrix_x4(qf[ks], qrow + ks * 16);
    }
    // Inside the loop keys are counted from the split's first (32 bits: a split has fewer than
    // 2^31 keys). Row g of m-tile mt sees key jr iff jr < n_keys and, when causal,
    // jr <= warp_diag + 16 mt + g (clamped: below -kWarpRows the warp sees nothing, above
    // n_keys it sees everything).
    const int n_keys = static_cast<int>(kr.ke - kr.kb);
    auto diag_of = [&](int64_t rows_t0) {
        return causal ? static_cast<int>(
                            max64(-kWarpRows - 1, min64(n_keys, rows_t0 + causal_offset - kr.kb)))
                      : n_keys;
    };
    auto end_of = [&](int64_t rows_t0) {
        return rows_t0 >= T ? 0
               : causal     ? max(0, min(n_keys, diag_of(rows_t0) + kWarpRows))
                            : n_keys;
    };
    const int warp_diag = diag_of(warp_t0);
    // Rows of this warp past the end of the queries or before every key of a tile: the warp
    // skips that tile's products (its state would not change: p = 0 everywhere, corr = 1).
    // wgmma takes every warp of the warpgroup: the block skips a tile only when its last warp
    // with rows before T, which sees the most keys, does.
    // (wgmma takes every warp of a warpgroup: a warpgroup skips a tile only when its last warp
    // with rows before T, which sees the most keys, does.)
    const int64_t wg_t0 = t0 + (warp >> 2) * 64;
    const int warp_end = !kWg ? end_of(warp_t0)
                         : wg_t0 >= T
                             ? 0
                             : end_of(wg_t0 + (min64(T - wg_t0, 64) - 1) / kWarpRows * kWarpRows);
    const uint16_t* ks_src = kh + kr.kb * D;
    const uint16_t* vs_src = vh + kr.kb * D;

    for (int it = 0; it < n_tiles; ++it) {
        const int jr = it * kTcK;
        const int stage = it & 1;
        __syncthreads();  // every warp is done with the stage the next tile overwrites
        if (it + 1 < n_tiles) {
            const int jr1 = jr + kTcK;
            const int valid = min(kTcK, n_keys - jr1);
            const int64_t off = static_cast<int64_t>(jr1) * D;
            if constexpr (kWg) {
                load_tile_wg_any<DP>(Ks + (stage ^ 1) * Sh::kTile, ks_src + off, valid, D, chunk);
                load_tile_wg_any<DP>(Vs + (stage ^ 1) * Sh::kTile, vs_src + off, valid, D, chunk);
            } else {
                load_tile_any<DP, kLd>(Ks + (stage ^ 1) * Sh::kTile, ks_src + off, valid, D, chunk);
                load_tile_any<DP, kLd>(Vs + (stage ^ 1) * Sh::kTile, vs_src + off, valid, D, chunk);
            }
        }
        mma::cp_async_commit();
        mma::cp_async_wait<1>();                     // this thread's copies of tile `it` are done
        if constexpr (kWg) wg::fence_proxy_async();  // ... visible to the tensor cores' reads
        __syncthreads();                             // ... and everyone's
        if (jr >= warp_end) continue;                // warp-uniform (warpgroup-uniform with kWg)
        const uint16_t* Kt = Ks + stage * Sh::kTile;
        const uint16_t* Vt = Vs + stage * Sh::kTile;

        // ---- S = Q K^T (16 MT x 64 per warp) ----
        // k-steps outside, n-tiles inside: consecutive mma go to different accumulators, so
        // none waits for the one before. Each s[mt][nt] sums its k-steps in order, whatever MT.
        float s[MT][kTcK / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int nt = 0; nt < kTcK / 8; ++nt)
                s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
        }
        // K fragments: with one m-tile, two k-steps per ldmatrix.x4 (Q is in registers); with
        // two, one k-step per ldmatrix.x2 and Q's fragments for it (fewer live registers).
        // wgmma: one instruction per k-step for the warpgroup's 64 x 64 scores, Q and K read by
        // the tensor cores (K-major: k = d in a core-matrix row; lbo to the next 8 d, sbo to
        // the next 8 rows).
        constexpr int kStep = MT == 1 ? 2 : 1;
        if constexpr (kWg) {
            float(&sf)[kTcK / 2] = reinterpret_cast<float(&)[kTcK / 2]>(s);
            wg::fence();
            // Q of this warpgroup: rows (warp / 4) 64 .., K-major like K.
            const uint16_t* qw = Qs + core_offset((warp >> 2) * 64, 0, DP / 8);
#pragma unroll
            for (int ks = 0; ks < kKs; ++ks) {
                wg::mma_ss<kTcK>(sf, wg::desc(qw + ks * 2 * 64, 128, DP / 8 * 128),
                                 wg::desc(Kt + ks * 2 * 64, 128, DP / 8 * 128), ks > 0);
            }
            wg::commit();
            wg::wait<0>();
            wg::fence_operands(sf);
        }
#pragma unroll
        for (int ks = 0; ks < (kWg ? 0 : kKs); ks += kStep) {
            const bool pair = kStep == 2 && ks + 1 < kKs;
            uint32_t qa[MT][2][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                for (int p = 0; p < (pair ? 2 : 1); ++p) {
                    if constexpr (MT == 1) {
#pragma unroll
                        for (int e = 0; e < 4; ++e) qa[mt][p][e] = qf[ks + p][e];
                    } else {
                        mma::ldmatrix_x4(qa[mt][p], qrow + mt * 16 * kLd + (ks + p) * 16);
                    }
                }
            }
#pragma unroll
            for (int nt = 0; nt < kTcK / 8; ++nt) {
                const uint16_t* krow = Kt + (nt * 8 + (lane & 7)) * kLd + ks * 16;
                if (pair) {
                    uint32_t b[4];
                    mma::ldmatrix_x4(b, krow + (lane >> 3) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        mma::mma_bf16_16816(s[mt][nt], qa[mt][0], b);
                        mma::mma_bf16_16816(s[mt][nt], qa[mt][1], b + 2);
                    }
                } else {
                    uint32_t b[2];
                    mma::ldmatrix_x2(b, krow + ((lane >> 3) & 1) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) mma::mma_bf16_16816(s[mt][nt], qa[mt][0], b);
                }
            }
        }

        // ---- online softmax (fp32) ----
        // Masked scores -inf: only on tiles that cross the causal diagonal or the end of the
        // split, in 32 bits relative to the tile (column c of row r is visible iff c <= lim,
        // the last column before both limits).
        if (jr + kTcK > n_keys || (causal && jr + kTcK - 1 > warp_diag)) {
            const int end_lim = min(kTcK, n_keys - jr) - 1;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int lim =
                        causal ? max(-1, min(end_lim, warp_diag + mt * 16 + g + 8 * r - jr))
                               : end_lim;
#pragma unroll
                    for (int nt = 0; nt < kTcK / 8; ++nt) {
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            if (nt * 8 + 2 * c4 + e > lim) s[mt][nt][2 * r + e] = kNegInf;
                        }
                    }
                }
            }
        }
        uint32_t pa[kTcK / 16][MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            // The tile's max in log2 units: scale_log2 > 0 (the launcher checks), so the max of
            // the raw scores times it is the max of the scaled scores, bit for bit.
            float mt_max[2] = {kNegInf, kNegInf};
#pragma unroll
            for (int nt = 0; nt < kTcK / 8; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) mt_max[e >> 1] = fmaxf(mt_max[e >> 1], s[mt][nt][e]);
            }
            float corr[2], mn[2], base[2];
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                mt_max[r] = warp_max<4>(mt_max[r]) * scale_log2;
                mn[r] = fmaxf(m[mt][r], mt_max[r]);
                corr[r] =
                    (m[mt][r] == kNegInf || mn[r] == kNegInf) ? 0.f : fast_exp2(m[mt][r] - mn[r]);
                // 2^(-inf - base) = 0 exactly: masked scores need no test of their own, only a
                // row with nothing visible yet needs a finite base.
                base[r] = mn[r] == kNegInf ? 0.f : mn[r];
            }
            float rs[2] = {0.f, 0.f};
#pragma unroll
            for (int nt = 0; nt < kTcK / 8; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    // p = 2^(s scale log2 e - m): one FFMA and one MUFU.EX2 per score.
                    const float p = fast_exp2(fmaf(s[mt][nt][e], scale_log2, -base[e >> 1]));
                    s[mt][nt][e] = p;
                    rs[e >> 1] += p;
                }
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                rs[r] = warp_sum<4>(rs[r]);
                if (mn[r] != kNegInf) {
                    m[mt][r] = mn[r];
                    l[mt][r] = l[mt][r] * corr[r] + rs[r];
                } else {
                    corr[r] = 1.f;  // nothing visible yet: the state stays as it is
                }
            }
            // Once a row's running max has settled (most tiles of a long key range) corr is 1
            // for every row of the warp, and multiplying by it would change no bit.
            if (__ballot_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f) != 0) {
#pragma unroll
                for (int nt = 0; nt < kNt; ++nt) {
                    o[mt][nt][0] *= corr[0];
                    o[mt][nt][1] *= corr[0];
                    o[mt][nt][2] *= corr[1];
                    o[mt][nt][3] *= corr[1];
                }
            }
            // P as bf16 A fragments (the C layout of n-tiles 2kk and 2kk + 1 is the A layout of
            // k-step kk), packed now: half the registers of the fp32 scores through P.V.
#pragma unroll
            for (int kk = 0; kk < kTcK / 16; ++kk) {
                pa[kk][mt][0] = mma::pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[kk][mt][1] = mma::pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[kk][mt][2] = mma::pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[kk][mt][3] = mma::pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
        }

        // ---- O += P V ----
        // wgmma: one instruction per 16 keys for the warpgroup's 64 x 8 NT outputs, V read by
        // the tensor cores (MN-major: n = d in a core-matrix row; lbo to the next 8 keys, sbo
        // to the next 8 d).
        if constexpr (kWg) {
            float(&of)[kNt * 4] = reinterpret_cast<float(&)[kNt * 4]>(o);
            wg::fence();
#pragma unroll
            for (int kk = 0; kk < kTcK / 16; ++kk) {
                wg::mma_rs<kNt * 8, true>(
                    of, pa[kk][0], wg::desc(Vt + kk * 2 * (DP / 8) * 64, DP / 8 * 128, 128), true);
            }
            wg::commit();
            wg::wait<0>();
            wg::fence_operands(of);
        } else {
#pragma unroll
            for (int kk = 0; kk < kTcK / 16; ++kk) {
                const uint32_t(&a)[MT][4] = pa[kk];
                const int mi = lane >> 3;
                const uint16_t* vrow =
                    Vt + (kk * 16 + (mi & 1) * 8 + (lane & 7)) * kLd + (mi >> 1) * 8;
#pragma unroll
                for (int nt = 0; nt + 1 < kNt; nt += 2) {
                    uint32_t b[4];
                    mma::ldmatrix_x4_trans(b, vrow + nt * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        mma::mma_bf16_16816(o[mt][nt], a[mt], b);
                        mma::mma_bf16_16816(o[mt][nt + 1], a[mt], b + 2);
                    }
                }
                if constexpr (kNt % 2 == 1) {  // lanes 0-15 address the last n-tile's two halves
                    uint32_t b[2];
                    mma::ldmatrix_x2_trans(b, vrow + (kNt - 1) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) mma::mma_bf16_16816(o[mt][kNt - 1], a[mt], b);
                }
            }
        }
    }
    mma::cp_async_wait<0>();

    if (out.data != nullptr) {  // finalized rows: attn_partial_finalize's arithmetic
        for_lane_rows([&](int mt, int r, int off) {
            const int64_t at = (row_g + off) * out.stride + h * D;
            const float L = l[mt][r];
#pragma unroll
            for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int d = nt * 8 + 2 * c4 + e;
                    if (d >= D) continue;
                    const float x = o[mt][nt][2 * r + e];
                    if (out.kind == 0) {
                        store_finalized(static_cast<float*>(out.data) + at + d, x, L);
                    } else if (out.kind == 1) {
                        store_finalized(static_cast<__nv_bfloat16*>(out.data) + at + d, x, L);
                    } else {
                        store_finalized(static_cast<__half*>(out.data) + at + d, x, L);
                    }
                }
            }
        });
        return;
    }
    // Write back (a split with no keys still writes its empty partial).
    for_lane_rows([&](int mt, int r, int off) {
        float* st = st_g + static_cast<int64_t>(off) * (D + 2);
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt) {
            const int d = nt * 8 + 2 * c4;
            if (d < D) st[d] = o[mt][nt][2 * r];
            if (d + 1 < D) st[d + 1] = o[mt][nt][2 * r + 1];
        }
        if (c4 == 0) {
            st[D] = m[mt][r] * kLn2;
            st[D + 1] = l[mt][r];
        }
    });
}

// The kWg kernel's launcher (attention_wgmma.cu, sm_90a): false, launching nothing, when it
// has no instance for head dim D (those of 33-64, 65-104 and 113-128 exist).
bool launch_wgmma(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                  int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int D, float scale,
                  int64_t causal_offset, int64_t splits, float* scratch, int chunk, TcOut out,
                  cudaStream_t stream);

}  // namespace fot::kernels::cuda::attn_tc
