// Row-wise kernels: RMSNorm (alone, or after the residual add), RoPE (alone, or with the
// local-cache write of k and v) and the per-row max / sum-exp of the vocab-parallel log-softmax.
// One block per row for the reductions (fp32, block tree reduction).
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.cuh"

namespace fot::kernels::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kMaxHalf = 128;  // D <= 256

struct InvFreq {
    float v[kMaxHalf];
};

// The rotation of one pair (x1, x2) by (cos, sin), rounded after every product and sum: nvcc
// would otherwise contract a * b - c * d into an FMA, and could pick the product to fuse
// differently in two kernels, so rope_kernel and rope_store_kv_kernel gave other bits for the
// same k (seen on an H200). It is also the emulator's arithmetic (built without contraction).
__device__ __forceinline__ void rope_rotate(float x1, float x2, float cs, float sn, float* y1,
                                            float* y2) {
    *y1 = __fsub_rn(__fmul_rn(x1, cs), __fmul_rn(x2, sn));
    *y2 = __fadd_rn(__fmul_rn(x2, cs), __fmul_rn(x1, sn));
}

// O: f32, or bf16/f16 when the output is a GEMM input (rounded as the GEMM would round it).
// kAdd: the residual add first (x += r, written back; add_kernel's arithmetic), so that the
// norm reads the new x from registers instead of a separate pass. x is written only if kAdd.
// The row's arithmetic is rmsnorm_row (common.cuh), shared with the GEMV's epilogue.
template <typename O, bool kAdd>
__global__ void rmsnorm_kernel(O* out, float* x, const float* r, const float* w, int64_t T,
                               int64_t C, float eps) {
    pdl_start();
    __shared__ float red[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        rmsnorm_row<O, kAdd>(out + t * C, x + t * C, kAdd ? r + t * C : nullptr, w, C, eps, red);
    }
}

// The RoPE kernels' threads: one per (t, h, i < D/2) pair of rotated dims, blockIdx.y walking
// the tokens and x the (h, i) pairs of a token, so that one 32-bit division finds h and i (a
// flat 64-bit index took four 64-bit divisions, each a long software sequence).
constexpr int kRopeThreads = 256;
dim3 rope_grid(int64_t T, int64_t H, int64_t half) {
    const int64_t x = (H * half + kRopeThreads - 1) / kRopeThreads;
    return dim3(static_cast<unsigned>(x), static_cast<unsigned>(T < 65535 ? T : 65535));
}
// Calls f(t, h, i) for every pair of this thread.
template <typename F>
__device__ __forceinline__ void for_rope_pairs(int64_t T, int H, int half, F&& f) {
    const unsigned j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= static_cast<unsigned>(H * half)) return;
    const int h = static_cast<int>(j / static_cast<unsigned>(half));
    const int i = static_cast<int>(j) - h * half;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) f(t, h, i);
}

__global__ void rope_kernel(float* x, int64_t T, int64_t H, int64_t D, int64_t stride,
                            int64_t first_pos, InvFreq inv) {
    pdl_start();
    const int half = static_cast<int>(D / 2);
    for_rope_pairs(T, static_cast<int>(H), half, [&](int64_t t, int h, int i) {
        const float f = static_cast<float>(first_pos + t) * inv.v[i];
        const float cs = cosf(f), sn = sinf(f);
        float* xh = x + t * stride + h * D;
        rope_rotate(xh[i], xh[i + half], cs, sn, &xh[i], &xh[i + half]);
    });
}

// rope_kernel on q and k (when rotate) and scatter_heads_kernel on k and v in one pass: one
// thread per (t, h, i < D/2), the angle computed once for both rotations, k rotated on its way
// to the store (k itself is not written). The same arithmetic as those kernels: the same bits.
template <typename E>
__global__ void rope_store_kv_kernel(float* q, int64_t q_stride, const float* k, int64_t k_stride,
                                     const float* v, int64_t v_stride, E* ks, E* vs,
                                     int64_t head_stride, int64_t at, int64_t T, int64_t H,
                                     int64_t D, bool rotate, InvFreq inv) {
    pdl_start();
    const int half = static_cast<int>(D / 2);
    for_rope_pairs(T, static_cast<int>(H), half, [&](int64_t t, int h, int i) {
        const float* kh = k + t * k_stride + h * D;
        const float* vh = v + t * v_stride + h * D;
        float k1 = kh[i], k2 = kh[i + half];
        if (rotate) {
            const float f = static_cast<float>(at + t) * inv.v[i];
            const float cs = cosf(f), sn = sinf(f);
            float* qh = q + t * q_stride + h * D;
            rope_rotate(qh[i], qh[i + half], cs, sn, &qh[i], &qh[i + half]);
            rope_rotate(k1, k2, cs, sn, &k1, &k2);
        }
        const int64_t row = h * head_stride + (at + t) * D;
        ks[row + i] = from_f32<E>(k1);
        ks[row + i + half] = from_f32<E>(k2);
        vs[row + i] = from_f32<E>(vh[i]);
        vs[row + i + half] = from_f32<E>(vh[i + half]);
    });
}

// The row's max and sum of exp(x - max) (in double), in every thread of the block.
__device__ void row_max_sumexp(const float* r, int64_t V, float* redf, double* redd, float& m,
                               double& s) {
    m = kNegInf;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = r[i] > m ? r[i] : m;
    m = block_max(m, redf);
    s = 0.0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        s += exp(static_cast<double>(r[i] - m));
    }
    s = block_sum(s, redd);
}

__global__ void row_max_sumexp_kernel(const float* logits, int64_t T, int64_t V, float* max_out,
                                      float* sum_out) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const float* r = logits + t * V;
        float m;
        double s;
        row_max_sumexp(r, V, redf, redd, m, s);
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
        float m;
        double s;
        row_max_sumexp(r, V, redf, redd, m, s);
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
        launch_pdl(rmsnorm_kernel<O, false>, rows_grid(T), kRowThreads, 0, as_stream(stream),
                   static_cast<O*>(out), const_cast<float*>(x), nullptr, w, T, C, eps);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

void add_rmsnorm(void* out, DType out_dtype, float* x, const float* r, const float* w, int64_t T,
                 int64_t C, float eps, void* stream) {
    if (T <= 0) return;
    dispatch_float_dtype(out_dtype, "cuda add_rmsnorm output", [&](auto* tag) {
        using O = std::remove_pointer_t<decltype(tag)>;
        launch_pdl(rmsnorm_kernel<O, true>, rows_grid(T), kRowThreads, 0, as_stream(stream),
                   static_cast<O*>(out), x, r, w, T, C, eps);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

namespace {
// inv_freq exactly as kernels/cpu/elementwise.cpp computes it (host fp32 pow).
InvFreq inv_freq(int64_t D, float theta, const char* what) {
    FOT_CHECK(D % 2 == 0 && D / 2 <= kMaxHalf, what, ": head_dim ", D, " must be even and at most ",
              2 * kMaxHalf);
    InvFreq inv{};
    for (int64_t i = 0; i < D / 2; ++i) {
        const float e = static_cast<float>(2 * i) / static_cast<float>(D);
        inv.v[i] = 1.0f / std::pow(theta, e);
    }
    return inv;
}
}  // namespace

void rope(float* x, int64_t T, int64_t H, int64_t D, int64_t stride, int64_t first_pos, float theta,
          void* stream) {
    const InvFreq inv = inv_freq(D, theta, "cuda rope");
    if (T <= 0 || H <= 0 || D == 0) return;
    FOT_CHECK(H * D < (int64_t{1} << 30), "cuda rope: ", H, " heads of ", D, " are too many");
    launch_pdl(rope_kernel, rope_grid(T, H, D / 2), kRopeThreads, 0, as_stream(stream), x, T, H, D,
               stride, first_pos, inv);
    FOT_CUDA_CHECK(cudaGetLastError());
}

void rope_store_kv(float* q, int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                   int64_t v_stride, void* k_store, void* v_store, DType store_dtype,
                   int64_t head_stride, int64_t at, int64_t T, int64_t H, int64_t D, float theta,
                   bool rotate, void* stream) {
    const InvFreq inv = inv_freq(D, theta, "cuda rope_store_kv");
    if (T <= 0 || H <= 0 || D == 0) return;
    FOT_CHECK(H * D < (int64_t{1} << 30), "cuda rope_store_kv: ", H, " heads of ", D,
              " are too many");
    dispatch_float_dtype(store_dtype, "cuda rope_store_kv store", [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        launch_pdl(rope_store_kv_kernel<E>, rope_grid(T, H, D / 2), kRopeThreads, 0,
                   as_stream(stream), q, q_stride, k, k_stride, v, v_stride,
                   static_cast<E*>(k_store), static_cast<E*>(v_store), head_stride, at, T, H, D,
                   rotate, inv);
    });
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
