// Elementwise kernels: add, silu_mul, embedding gather, f32 -> bf16/f16 conversion (the GEMM
// input), scatter into head-major key/value stores, and the random fill of the benchmark.
// All are memory-bound one-pass grid-stride loops.
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.cuh"

namespace fot::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
    pdl_start();
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) out[i] = a[i] + b[i];
}

template <typename O>
__global__ void silu_mul_kernel(O* out, const float* gate, const float* up, int64_t n) {
    pdl_start();
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) {
        out[i] = from_f32<O>(silu_times(gate[i], up[i]));
    }
}

__device__ __forceinline__ int32_t id_at(const int32_t* ids, int64_t t) {
    return ids[t];
}
__device__ __forceinline__ int32_t id_at(const InlineIds& ids, int64_t t) {
    return ids.v[t];
}

// One block row-loop per token. Ids: a device array, or InlineIds.
template <typename T, typename Ids>
__global__ void embedding_kernel(float* out, Ids ids, const T* table, int64_t T_, int64_t C,
                                 int64_t row_begin, int64_t rows) {
    pdl_start();
    for (int64_t t = blockIdx.x; t < T_; t += gridDim.x) {
        const int64_t r = static_cast<int64_t>(id_at(ids, t)) - row_begin;
        float* dst = out + t * C;
        if (r < 0 || r >= rows) {
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = 0.f;
        } else {
            const T* src = table + r * C;
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = to_f32(src[c]);
        }
    }
}

template <typename T>
__global__ void convert_kernel(T* dst, const float* src, int64_t n) {
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) dst[i] = from_f32<T>(src[i]);
}

template <typename T>
__global__ void scatter_heads_kernel(T* dst, int64_t dst_head_stride, int64_t at, const float* x,
                                     int64_t x_stride, int64_t T_, int64_t H, int64_t D) {
    pdl_start();
    const int64_t n = T_ * H * D;
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) {
        // i walks x row by row, so reads are coalesced; writes are runs of D per (t, h).
        const int64_t t = i / (H * D), hd = i % (H * D), h = hd / D, d = hd % D;
        dst[h * dst_head_stride + (at + t) * D + d] = from_f32<T>(x[t * x_stride + hd]);
    }
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

template <typename T>
__global__ void fill_uniform_kernel(T* dst, int64_t n, uint64_t seed, float scale) {
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) {
        const uint64_t r = mix64(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
        const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        dst[i] = from_f32<T>((2.0f * u - 1.0f) * scale);
    }
}

}  // namespace

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver / no device" error
        return 0;
    }
    return n;
}

void add(float* out, const float* a, const float* b, int64_t n, void* stream) {
    if (n <= 0) return;
    launch_pdl(add_kernel, grid_for(n, kThreads), kThreads, 0, as_stream(stream), out, a, b, n);
    FOT_CUDA_CHECK(cudaGetLastError());
}

void silu_mul(void* out, DType out_dtype, const float* gate, const float* up, int64_t n,
              void* stream) {
    if (n <= 0) return;
    dispatch_float_dtype(out_dtype, "cuda silu_mul output", [&](auto* tag) {
        using O = std::remove_pointer_t<decltype(tag)>;
        launch_pdl(silu_mul_kernel<O>, grid_for(n, kThreads), kThreads, 0, as_stream(stream),
                   static_cast<O*>(out), gate, up, n);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

namespace {
template <typename Ids>
void launch_embedding(float* out, const Ids& ids, const void* table, DType table_dtype, int64_t T,
                      int64_t C, int64_t row_begin, int64_t rows, void* stream) {
    if (T <= 0 || C <= 0) return;
    dispatch_float_dtype(table_dtype, "cuda embedding table", [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        const int blocks = static_cast<int>(T < 65535 ? T : 65535);
        launch_pdl(embedding_kernel<E, Ids>, blocks, kThreads, 0, as_stream(stream), out, ids,
                   static_cast<const E*>(table), T, C, row_begin, rows);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}
}  // namespace

void embedding(float* out, const int32_t* ids, const void* table, DType table_dtype, int64_t T,
               int64_t C, int64_t row_begin, int64_t rows, void* stream) {
    launch_embedding(out, ids, table, table_dtype, T, C, row_begin, rows, stream);
}

void embedding_inline(float* out, const InlineIds& ids, const void* table, DType table_dtype,
                      int64_t T, int64_t C, int64_t row_begin, int64_t rows, void* stream) {
    FOT_ASSERT(T <= kInlineIds);
    launch_embedding(out, ids, table, table_dtype, T, C, row_begin, rows, stream);
}

void convert_from_f32(void* dst, DType dst_dtype, const float* src, int64_t n, void* stream) {
    if (n <= 0) return;
    dispatch_float_dtype(dst_dtype, "cuda convert", [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        convert_kernel<E><<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
            static_cast<E*>(dst), src, n);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

void scatter_heads(void* dst, DType dst_dtype, int64_t dst_head_stride, int64_t at, const float* x,
                   int64_t x_stride, int64_t T, int64_t H, int64_t D, void* stream) {
    const int64_t n = T * H * D;
    if (n <= 0) return;
    dispatch_float_dtype(dst_dtype, "cuda scatter_heads store", [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        launch_pdl(scatter_heads_kernel<E>, grid_for(n, kThreads), kThreads, 0, as_stream(stream),
                   static_cast<E*>(dst), dst_head_stride, at, x, x_stride, T, H, D);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

void fill_uniform(void* dst, DType dst_dtype, int64_t n, uint64_t seed, float scale, void* stream) {
    if (n <= 0) return;
    dispatch_float_dtype(dst_dtype, "cuda fill_uniform", [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        fill_uniform_kernel<E><<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
            static_cast<E*>(dst), n, seed, scale);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
