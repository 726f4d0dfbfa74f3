// Elementwise kernels. add: the first kernel, kept small so CI proves the CUDA path builds.
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.h"

namespace fot::kernels::cuda {
namespace {

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) out[i] = a[i] + b[i];
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
    const int threads = 256;
    const int64_t want = (n + threads - 1) / threads;
    const int blocks = static_cast<int>(want < 65535 ? want : 65535);
    add_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(out, a, b, n);
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
