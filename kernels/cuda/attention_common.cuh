// Pieces shared by the attention kernels (attention.cu: fp32 CUDA-core kernels,
// attention_tc.cu: bf16 tensor-core kernel): key-split ranges and where a block reads its
// starting state and writes its partial. Included by .cu files only.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace fot::kernels::cuda::attn {

// Key range [kb, ke) of split `split` for a block whose last query is t_last; the range of
// visible keys [0, kend) is cut into `splits` chunks of whole tiles of tile_k keys.
struct KeyRange {
    int64_t kb, ke;
};
__device__ __forceinline__ KeyRange split_range(int64_t S, int64_t t_last, int64_t causal_offset,
                                                int64_t split, int64_t splits, int64_t tile_k) {
    int64_t kend = S;
    if (causal_offset < S) kend = min64(S, t_last + causal_offset + 1);
    if (kend < 0) kend = 0;
    int64_t chunk = (kend + splits - 1) / splits;
    chunk = (chunk + tile_k - 1) / tile_k * tile_k;
    const int64_t kb = min64(kend, split * chunk);
    return {kb, min64(kend, kb + chunk)};
}

// One warp (lane = its lane) merges a row: out = merge(first (optional), parts[0],
// parts[stride], ..., parts[(R - 1) * stride]) in that order, with the arithmetic of the CPU
// attn_partial_merge. out may alias first: each lane reads the dims it writes, and m / l are
// written after every lane has read them. The parts are read past L1 (ld.global.cg): they may
// have been written by other blocks of the running grid (the decode kernel's last block).
__device__ __forceinline__ void merge_row(float* out, const float* first, const float* parts,
                                          int64_t R, int64_t stride, int64_t D, int lane) {
    float M = first ? first[D] : kNegInf;
    for (int64_t r = 0; r < R; ++r) M = fmaxf(M, __ldcg(parts + r * stride + D));
    float L = 0.f;
    float wf = 0.f;
    if (M != kNegInf) {
        if (first && first[D] != kNegInf) {
            wf = expf(first[D] - M);
            L += first[D + 1] * wf;
        }
        for (int64_t r = 0; r < R; ++r) {
            const float* p = parts + r * stride;
            const float m = __ldcg(p + D);
            if (m == kNegInf) continue;
            L += __ldcg(p + D + 1) * expf(m - M);
        }
    }
    for (int64_t d = lane; d < D; d += 32) {
        float a = 0.f;
        if (M != kNegInf) {
            if (first && first[D] != kNegInf) a += first[d] * wf;
            for (int64_t r = 0; r < R; ++r) {
                const float* p = parts + r * stride;
                const float m = __ldcg(p + D);
                if (m == kNegInf) continue;
                a += __ldcg(p + d) * expf(m - M);
            }
        }
        out[d] = a;
    }
    __syncwarp();
    if (lane == 0) {
        out[D] = M;
        out[D + 1] = L;
    }
    __syncwarp();
}

// Where a block reads its starting state and writes its result: the caller's partial
// (splits == 1) or its own slice of the split scratch, starting empty.
__device__ __forceinline__ float* state_row(float* part, float* scratch, int64_t splits,
                                            int64_t split, int64_t H, int64_t T, int64_t h,
                                            int64_t t, int64_t D) {
    if (splits == 1) return part + (h * T + t) * (D + 2);
    return scratch + ((split * H + h) * T + t) * (D + 2);
}

// f rounded to bf16 (nearest even) and widened back: the `fast` precision's operand rounding,
// bit-identical to fot::round_bf16.
__device__ __forceinline__ float round_bf16(float f) {
    return __uint_as_float(static_cast<uint32_t>(f32_to_bf16_bits(f)) << 16);
}

}  // namespace fot::kernels::cuda::attn
