// Row-wise kernels: RMSNorm, RoPE and the per-row max / sum-exp of the vocab-parallel
// log-softmax. One block per row for the reductions (fp32, block tree reduction).
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace fot::kernels::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kMaxHalf = 128;  // D <= 256

struct InvFreq {
    float v[kMaxHalf];
};

// O: f32, or bf16/f16 when the output is a GEMM input (rounded as the GEMM would round it).
template <typename O>
__global__ void rmsnorm_kernel(O* out, const float* x, const float* w, int64_t T, int64_t C,
                               float eps) {
    __shared__ float red[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const float* xr = x + t * C;
        O* yr = out + t * C;
        float ss = 0.f;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += xr[c] * xr[c];
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            yr[c] = from_f32<O>(w[c] * (xr[c] * inv));
        }
    }
}

// One thread per (t, h, i < D/2) pair of rotated dims.
__global__ void rope_kernel(float* x, int64_t T, int64_t H, int64_t D, int64_t stride,
                            int64_t first_pos, InvFreq inv) {
    const int64_t half = D / 2, n = T * H * half;
    int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; idx < n; idx += step) {
        const int64_t i = idx % half, th = idx / half, h = th % H, t = th / H;
        const float f = static_cast<float>(first_pos + t) * inv.v[i];
        const float cs = cosf(f), sn = sinf(f);
        float* xh = x + t * stride + h * D;
        const float x1 = xh[i], x2 = xh[i + half];
        xh[i] = x1 * cs - x2 * sn;
        xh[i + half] = x2 * cs + x1 * sn;
    }
}

__global__ void row_max_sumexp_kernel(const float* logits, int64_t T, int64_t V, float* max_out,
                                      float* sum_out) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const float* r = logits + t * V;
        float m = kNegInf;
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = r[i] > m ? r[i] : m;
        m = block_max(m, redf);
        double s = 0.0;
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
            s += exp(static_cast<double>(r[i] - m));
        }
        s = block_sum(s, redd);
        if (threadIdx.x == 0) {
            max_out[t] = m;
            sum_out[t] = static_cast<float>(s);
        }
    }
}

__global__ void logsoftmax_parts_kernel(const float* logits, int64_t T, int64_t V,
                                        const int32_t* targets, int64_t vocab_begin, float* parts) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const float* r = logits + t * V;
        float m = kNegInf;
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = r[i] > m ? r[i] : m;
        m = block_max(m, redf);
        double s = 0.0;
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
            s += exp(static_cast<double>(r[i] - m));
        }
        s = block_sum(s, redd);
        if (threadIdx.x == 0) {
            const int64_t col = targets[t] < 0 ? -1 : targets[t] - vocab_begin;
            parts[3 * t] = m;
            parts[3 * t + 1] = static_cast<float>(s);
            parts[3 * t + 2] = (col >= 0 && col < V) ? r[col] : 0.0f;
        }
    }
}

int rows_grid(int64_t T) {
    return static_cast<int>(T < 65535 ? T : 65535);
}

}  // namespace

void rmsnorm(void* out, DType out_dtype, const float* x, const float* w, int64_t T, int64_t C,
             float eps, void* stream) {
    if (T <= 0) return;
    dispatch_float_dtype(out_dtype, "cuda rmsnorm output", [&](auto* tag) {
        using O = std::remove_pointer_t<decltype(tag)>;
        rmsnorm_kernel<O><<<rows_grid(T), kRowThreads, 0, as_stream(stream)>>>(static_cast<O*>(out),
                                                                               x, w, T, C, eps);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

void rope(float* x, int64_t T, int64_t H, int64_t D, int64_t stride, int64_t first_pos, float theta,
          void* stream) {
    FOT_CHECK(D % 2 == 0 && D / 2 <= kMaxHalf, "cuda rope: head_dim ", D,
              " must be even and at most ", 2 * kMaxHalf);
    if (T <= 0 || H <= 0 || D == 0) return;
    // inv_freq exactly as kernels/cpu/elementwise.cpp computes it (host fp32 pow).
    InvFreq inv{};
    for (int64_t i = 0; i < D / 2; ++i) {
        const float e = static_cast<float>(2 * i) / static_cast<float>(D);
        inv.v[i] = 1.0f / std::pow(theta, e);
    }
    const int64_t n = T * H * (D / 2);
    rope_kernel<<<grid_for(n, 256), 256, 0, as_stream(stream)>>>(x, T, H, D, stride, first_pos,
                                                                 inv);
    FOT_CUDA_CHECK(cudaGetLastError());
}

void row_max_sumexp(const float* logits, int64_t T, int64_t V, float* max_out, float* sum_out,
                    void* stream) {
    if (T <= 0) return;
    row_max_sumexp_kernel<<<rows_grid(T), kRowThreads, 0, as_stream(stream)>>>(logits, T, V,
                                                                               max_out, sum_out);
    FOT_CUDA_CHECK(cudaGetLastError());
}

void logsoftmax_parts(float* parts, const float* logits, int64_t T, int64_t V,
                      const int32_t* targets, int64_t vocab_begin, void* stream) {
    if (T <= 0) return;
    logsoftmax_parts_kernel<<<rows_grid(T), kRowThreads, 0, as_stream(stream)>>>(
        logits, T, V, targets, vocab_begin, parts);
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
