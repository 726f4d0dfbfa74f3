// Reading consecutive key rows at memory bandwidth for a few queries (decode: <= 8), two ways:
// warp_key_dots (8 lanes per key, no shared memory; its own summation order) and
// warp_stage_rows (a warp's 32 rows copied to shared memory with coalesced loads, then one lane
// per key sums in d order, so the scores keep the bits of a plain sequential dot product).
// Included by .cu files only.
//
// Why 8 lanes per key: with one lane per key, each load instruction of a warp touches 32 rows,
// i.e. 32 L1 wavefronts for 256 useful bytes. L1 handles about one wavefront per clock and SM,
// which caps a lane-per-key scoring loop near 8 B x 1.98 GHz x 132 SMs = 2.1 TB/s on an H200
// (the 1.34 TB/s measured for decode attention on 2026-11-29 fits: half its bytes were keys).
// In warp_key_dots lane `sub` of a key's 8 lanes reads the row's 8-byte pieces sub, sub + 8, ...:
// one load instruction reads 4 rows x 64 contiguous bytes, and a 3-step butterfly sums the 8
// partial dots. The piece -> lane map does not depend on where a key sits, so equal keys get equal
// scores.
#pragma once

#include <cstdint>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"

namespace fot::kernels::cuda {

constexpr int kKeyLanes = 8;                  // lanes that share a key
constexpr int kKeysPerPass = 32 / kKeyLanes;  // keys of one load instruction

// Rows j = j0 + lane / kKeyLanes + kKeysPerPass * b (b < kPasses) of k (rows of D elements,
// 8-byte pieces: D * sizeof(E) % 8 == 0, k 8-byte aligned): afterwards every lane of row j's
// group holds dot[b][t] = sum over d of qs[t * q_ld + d] * k[j][d] for t < nq (0 when j >= n).
// kRound rounds each key element to bf16 first (the `fast` operand rounding). The lane sums its
// pieces in order, then the butterfly adds the 8 lanes' sums. Call from all 32 lanes of a warp
// with a warp-uniform j0 (the butterfly needs every lane). kPasses key groups are in flight
// per lane: kPasses x 4 loads of 8 bytes before the first use (more passes, more bytes in
// flight per warp, more registers).
template <typename E, bool kRound, int kMaxQ, int kPasses>
__device__ __forceinline__ void warp_key_dots(const E* __restrict__ k, int D, int64_t n, int64_t j0,
                                              const float* qs, int q_ld, int nq,
                                              float (&dot)[kPasses][kMaxQ]) {
    constexpr int kN = 8 / sizeof(E);  // elements per 8-byte piece
    constexpr int kBatch = 4;          // pieces per row and lane loaded before their first use
    const int lane = threadIdx.x & 31, sub = lane % kKeyLanes, slot = lane / kKeyLanes;
    const int pieces = D / kN;
    const uint2* row[kPasses];
    bool ok[kPasses];
#pragma unroll
    for (int b = 0; b < kPasses; ++b) {
        const int64_t j = j0 + slot + kKeysPerPass * b;
        ok[b] = j < n;
        row[b] = reinterpret_cast<const uint2*>(k + (ok[b] ? j : 0) * D);
#pragma unroll
        for (int t = 0; t < kMaxQ; ++t) dot[b][t] = 0.f;
    }
    for (int c0 = sub; c0 < pieces; c0 += kKeyLanes * kBatch) {
        uint2 raw[kPasses][kBatch];
#pragma unroll
        for (int b = 0; b < kPasses; ++b) {
#pragma unroll
            for (int i = 0; i < kBatch; ++i) {
                const int c = c0 + i * kKeyLanes;
                raw[b][i] = ok[b] && c < pieces ? __ldg(row[b] + c) : uint2{0u, 0u};
            }
        }
#pragma unroll
        for (int b = 0; b < kPasses; ++b) {
#pragma unroll
            for (int i = 0; i < kBatch; ++i) {
                const int c = c0 + i * kKeyLanes;
                if (c >= pieces) break;
                const E* e = reinterpret_cast<const E*>(&raw[b][i]);
                const float* qc = qs + c * kN;
#pragma unroll
                for (int u = 0; u < kN; ++u) {
                    const float x = kRound ? attn::round_bf16(to_f32(e[u])) : to_f32(e[u]);
#pragma unroll
                    for (int t = 0; t < kMaxQ; ++t) {
                        if (t < nq) dot[b][t] = fmaf(qc[t * q_ld + u], x, dot[b][t]);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int b = 0; b < kPasses; ++b) {
#pragma unroll
        for (int t = 0; t < kMaxQ; ++t) {
            if (t < nq) dot[b][t] = warp_sum<kKeyLanes>(dot[b][t]);
        }
    }
}

// Shared-memory row stride, in 8-byte pieces, of a staged tile of rows of `pieces` pieces: odd,
// so that the 8-byte reads of 32 lanes at the same column of 32 rows hit distinct banks.
__host__ __device__ __forceinline__ int stage_ld(int pieces) {
    return pieces | 1;
}

// Copies rows [0, rows) (rows <= 32) of src (consecutive rows of `pieces` 8-byte pieces, 8-byte
// aligned) to tile (row r at tile + r * stage_ld(pieces)): lane i copies flat pieces i, i + 32,
// ..., so each instruction reads 256 contiguous bytes, with cp.async (no registers held while
// the copies are in flight), committed as one group. They are visible to the warp after
// mma::cp_async_wait and __syncwarp (warp_stage_rows does both). Call from all 32 lanes.
__device__ __forceinline__ void warp_stage_rows_issue(uint2* tile, const uint2* __restrict__ src,
                                                      int pieces, int rows) {
    const int lane = threadIdx.x & 31, ld = stage_ld(pieces), total = pieces * rows;
    int r = 0, c = lane;  // (row, piece) of flat piece p, kept without a division
    while (c >= pieces) {
        c -= pieces;
        ++r;
    }
    for (int p = lane; p < total; p += 32) {
        mma::cp_async<8>(tile + r * ld + c, src + p, true);
        c += 32;
        while (c >= pieces) {
            c -= pieces;
            ++r;
        }
    }
    mma::cp_async_commit();
}

// warp_stage_rows_issue, then waits: on return the whole tile is visible to every lane of the
// warp.
__device__ __forceinline__ void warp_stage_rows(uint2* tile, const uint2* __restrict__ src,
                                                int pieces, int rows) {
    warp_stage_rows_issue(tile, src, pieces, rows);
    mma::cp_async_wait<0>();
    __syncwarp();
}

}  // namespace fot::kernels::cuda
