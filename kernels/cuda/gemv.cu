// GEMV for decode-sized matmuls (T <= kGemvMaxT tokens): out[T, N] = x[T, K] * w[N, K]^T with
// the arithmetic of the cuBLAS path (kernels/cuda/blas.h): bf16/f16 weights multiply x
// rounded to the weight's type, f32 weights multiply f32 x, fp32 accumulation.
//
// Reading the weights once is the whole cost (6.85 GB per token for LongLLaMA-3B): each warp
// streams two rows of w with 16-byte loads (the loop is unrolled so that about 8 loads per lane
// are in flight: ~1 KiB per warp, what the memory latency needs), x comes through L1 (it is
// small and every warp reads it), and a warp reduction finishes each output. This replaces a
// cuBLAS call plus a separate x conversion kernel per matmul in decode.
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.cuh"

namespace fot::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerWarp = 2;

// x rounded as the weight's type rounds it (the cuBLAS path converts x to w's type).
template <typename W>
__device__ __forceinline__ float as_operand(float x) {
    if constexpr (std::is_same_v<W, float>) {
        return x;
    } else {
        return to_f32(from_f32<W>(x));
    }
}

// X: float (rounded here), or W itself (x already rounded to the weight's type by its producer).
// Up to kGemvMaxGroup matmuls of one x in one launch: matrix i takes the warps of rows
// [first[i], first[i] + N[i]) of the launch (first[i] a multiple of kRowsPerWarp, so no warp
// spans two matrices). Each output row is computed exactly as a single-matrix launch does.
template <typename W>
struct Targets {
    float* out[kGemvMaxGroup];
    const W* w[kGemvMaxGroup];
    int64_t N[kGemvMaxGroup];
    int64_t first[kGemvMaxGroup];
    int n;
};

template <typename W, typename X, int kT>
__global__ void __launch_bounds__(kThreads)
    gemv_kernel(Targets<W> tg, const X* __restrict__ x, int64_t K) {
    pdl_start();
    static_assert(std::is_same_v<X, float> || std::is_same_v<X, W>, "x is f32 or w's type");
    constexpr int kE = 16 / sizeof(W);  // weights per 16-byte load
    const int lane = threadIdx.x & 31;
    const int64_t warp = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32;
    // The warp's matrix, by static indices only (a dynamic index would copy the parameters
    // to local memory).
    float* out = tg.out[0];
    const W* w = tg.w[0];
    int64_t N = tg.N[0], first = tg.first[0];
#pragma unroll
    for (int i = 1; i < kGemvMaxGroup; ++i) {
        if (i < tg.n && warp * kRowsPerWarp >= tg.first[i]) {
            out = tg.out[i];
            w = tg.w[i];
            N = tg.N[i];
            first = tg.first[i];
        }
    }
    const int64_t n0 = warp * kRowsPerWarp - first;
    if (n0 >= N) return;
    const int64_t chunks = K / kE;
    float acc[kRowsPerWarp][kT];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
        for (int t = 0; t < kT; ++t) acc[r][t] = 0.f;
    }
    const uint4* rows[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        const int64_t n = n0 + r < N ? n0 + r : n0;  // a missing last row repeats the first
        rows[r] = reinterpret_cast<const uint4*>(w + n * K);
    }
#pragma unroll 4
    for (int64_t c = lane; c < chunks; c += 32) {
        uint4 raw[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) raw[r] = __ldg(rows[r] + c);
        float xv[kT][kE];
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            if constexpr (std::is_same_v<X, float>) {
                const float4* xp = reinterpret_cast<const float4*>(x + t * K + c * kE);
#pragma unroll
                for (int u = 0; u < kE / 4; ++u) {
                    const float4 f = __ldg(xp + u);
                    xv[t][4 * u] = as_operand<W>(f.x);
                    xv[t][4 * u + 1] = as_operand<W>(f.y);
                    xv[t][4 * u + 2] = as_operand<W>(f.z);
                    xv[t][4 * u + 3] = as_operand<W>(f.w);
                }
            } else {  // kE elements of w's type: one 16-byte load
                const uint4 raw = __ldg(reinterpret_cast<const uint4*>(x + t * K + c * kE));
                const X* e = reinterpret_cast<const X*>(&raw);
#pragma unroll
                for (int u = 0; u < kE; ++u) xv[t][u] = to_f32(e[u]);
            }
        }
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            const W* e = reinterpret_cast<const W*>(&raw[r]);
#pragma unroll
            for (int u = 0; u < kE; ++u) {
                const float wv = to_f32(e[u]);
#pragma unroll
                for (int t = 0; t < kT; ++t) acc[r][t] = fmaf(xv[t][u], wv, acc[r][t]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            const float s = warp_sum(acc[r][t]);
            if (lane == 0 && n0 + r < N) out[t * N + n0 + r] = s;
        }
    }
}

template <typename W, typename X>
void launch_t(const GemvTarget* targets, int n, const X* x, int64_t T, int64_t K, cudaStream_t st) {
    Targets<W> tg{};
    tg.n = n;
    int64_t rows = 0;  // the launch's rows, each matrix starting on a warp boundary
    for (int i = 0; i < n; ++i) {
        tg.out[i] = targets[i].out;
        tg.w[i] = static_cast<const W*>(targets[i].w);
        tg.N[i] = targets[i].N;
        tg.first[i] = rows;
        rows += (targets[i].N + kRowsPerWarp - 1) / kRowsPerWarp * kRowsPerWarp;
    }
    if (rows == 0) return;
    const int64_t warps = rows / kRowsPerWarp;
    const unsigned blocks = static_cast<unsigned>((warps * 32 + kThreads - 1) / kThreads);
    switch (T) {
        case 1:
            launch_pdl(gemv_kernel<W, X, 1>, blocks, kThreads, 0, st, tg, x, K);
            break;
        case 2:
            launch_pdl(gemv_kernel<W, X, 2>, blocks, kThreads, 0, st, tg, x, K);
            break;
        case 3:
            launch_pdl(gemv_kernel<W, X, 3>, blocks, kThreads, 0, st, tg, x, K);
            break;
        default:
            launch_pdl(gemv_kernel<W, X, 4>, blocks, kThreads, 0, st, tg, x, K);
            break;
    }
}

}  // namespace

bool gemv_supported(const void* x, DType x_dtype, const void* w, DType w_dtype, int64_t T,
                    int64_t K) {
    const int64_t esz = static_cast<int64_t>(dtype_size(w_dtype));
    return (x_dtype == DType::kF32 || x_dtype == w_dtype) && T >= 1 && T <= kGemvMaxT &&
           reinterpret_cast<uintptr_t>(w) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
           (K * esz) % 16 == 0 && K % 4 == 0 &&
           (w_dtype == DType::kF32 || w_dtype == DType::kBF16 || w_dtype == DType::kF16);
}

void gemv(float* out, const void* x, DType x_dtype, const void* w, DType w_dtype, int64_t T,
          int64_t N, int64_t K, void* stream) {
    const GemvTarget t{out, w, N};
    gemv_group(&t, 1, x, x_dtype, w_dtype, T, K, stream);
}

void gemv_group(const GemvTarget* targets, int n, const void* x, DType x_dtype, DType w_dtype,
                int64_t T, int64_t K, void* stream) {
    FOT_CHECK(n >= 1 && n <= kGemvMaxGroup, "cuda gemv: ", n, " matrices in one launch (1 .. ",
              kGemvMaxGroup, ")");
    for (int i = 0; i < n; ++i) {
        FOT_CHECK(gemv_supported(x, x_dtype, targets[i].w, w_dtype, T, K),
                  "cuda gemv: unsupported shape, alignment or input type (T ", T, ", K ", K, ", x ",
                  dtype_name(x_dtype), ", w ", dtype_name(w_dtype), ")");
        FOT_CHECK(targets[i].N >= 0, "cuda gemv: negative N");
    }
    cudaStream_t st = as_stream(stream);
    dispatch_float_dtype(w_dtype, "cuda gemv weights", [&](auto* tag) {
        using W = std::remove_pointer_t<decltype(tag)>;
        if (x_dtype == DType::kF32) {
            launch_t<W, float>(targets, n, static_cast<const float*>(x), T, K, st);
        } else {
            launch_t<W, W>(targets, n, static_cast<const W*>(x), T, K, st);
        }
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
