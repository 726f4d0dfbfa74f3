// Shared-memory tiles of queries and keys and the fp32 Q.K^T micro-kernel, shared by the
// tiled attention kernel (attention.cu) and the top-k scoring kernel (topk.cu).
//
// A tile block has kTileThreads = 128 threads computing a kTileQ x kTileK = 64 x 32 score tile;
// thread tid owns queries tq*4 .. tq*4+3 (tq = tid / 8) and keys tk*4 .. tk*4+3 (tk = tid % 8),
// so the 8 threads of one query group are 8 consecutive lanes of one warp (row reductions are
// 3 xor-shuffles). Queries and keys sit in shared memory d-major ([d][row], padded by 4 floats
// so float4 reads stay aligned), which makes every inner-loop read a conflict-free float4.
// DP is the head dim rounded up to 32 (32, 64 or 128); loops run over the real D.
// Included by .cu files only.
#pragma once

#include <cstdint>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/common.cuh"

namespace fot::kernels::cuda::tile {

constexpr int kTileQ = 64;
constexpr int kTileK = 32;
constexpr int kTileThreads = 128;
constexpr int kLdQ = kTileQ + 4;  // floats per d-row of the query tile
constexpr int kLdK = kTileK + 4;  // floats per d-row of the key tile

// Copies n_rows rows of D elements (contiguous in global memory, n_rows * D elements from src)
// into shared memory as f32: transposed ? dst[d * ld + r] : dst[r * ld + d]. 16-byte loads when
// src is 16-byte aligned and the element count allows it. kRound: each value is rounded to
// bf16 (the `fast` precision's operand rounding).
template <typename T, bool kTransposed, bool kRound = false>
__device__ __forceinline__ void load_rows(float* dst, int ld, const T* __restrict__ src, int n_rows,
                                          int D) {
    const int total = n_rows * D;
    constexpr int kVec = 16 / sizeof(T);
    auto put = [&](int r, int d, float v) {
        if (kRound) v = attn::round_bf16(v);
        if (kTransposed) {
            dst[d * ld + r] = v;
        } else {
            dst[r * ld + d] = v;
        }
    };
    if ((reinterpret_cast<uintptr_t>(src) & 15u) == 0 && total % kVec == 0) {
        const uint4* s4 = reinterpret_cast<const uint4*>(src);
        for (int c = threadIdx.x; c < total / kVec; c += blockDim.x) {
            const uint4 raw = __ldg(s4 + c);
            const T* e = reinterpret_cast<const T*>(&raw);
            const int i = c * kVec;
            int r = i / D, d = i - r * D;
#pragma unroll
            for (int u = 0; u < kVec; ++u) {
                put(r, d, to_f32(e[u]));
                if (++d == D) {
                    d = 0;
                    ++r;
                }
            }
        }
    } else {
        for (int i = threadIdx.x; i < total; i += blockDim.x) {
            const int r = i / D, d = i - r * D;
            put(r, d, to_f32(src[i]));
        }
    }
}

// Query tile: rows t0 .. t0 + kTileQ - 1 of head h, d-major into Qs [DP][kLdQ]; rows >= T are
// zero. kRound: values rounded to bf16.
template <bool kRound = false>
__device__ __forceinline__ void load_query_tile(float* Qs, const float* __restrict__ q,
                                                int64_t q_stride, int64_t h, int64_t t0, int64_t T,
                                                int D) {
    for (int i = threadIdx.x; i < kTileQ * D; i += blockDim.x) {
        const int r = i / D, d = i - r * D;
        const int64_t t = t0 + r;
        const float x = t < T ? q[t * q_stride + h * D + d] : 0.f;
        Qs[d * kLdQ + r] = kRound ? attn::round_bf16(x) : x;
    }
}

// s[i][c] = sum_d Q[tq*4 + i][d] * K[tk*4 + c][d] over d < D.
__device__ __forceinline__ void qk_microtile(const float* Qs, const float* Ks, int D, int tq,
                                             int tk, float s[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int c = 0; c < 4; ++c) s[i][c] = 0.f;
    }
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
        const float4 a = *reinterpret_cast<const float4*>(Qs + d * kLdQ + tq * 4);
        const float4 b = *reinterpret_cast<const float4*>(Ks + d * kLdK + tk * 4);
        const float av[4] = {a.x, a.y, a.z, a.w};
        const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
            for (int c = 0; c < 4; ++c) s[i][c] = fmaf(av[i], bv[c], s[i][c]);
        }
    }
}

}  // namespace fot::kernels::cuda::tile
