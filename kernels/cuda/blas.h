// Blas: the cuBLAS handle of one device and stream, and the backend's GEMM.
//
// matmul computes out[T, N] = x[T, K] * w[N, K]^T (x f32 activations, w a torch Linear
// weight) with fp32 accumulation, as one cublasGemmEx call in the "TN" layout (no copy of w):
//  - f32 w: f32 x f32 with CUBLAS_COMPUTE_32F and the default math mode, so no TF32 rounding
//    (needed for golden parity with f32 checkpoints).
//  - bf16 / f16 w: cuBLAS has no f32 x bf16 GEMM, so x is first rounded to w's type (round to
//    nearest even) into the caller's scratch `x_lowp` (T * K elements of w's type), then a
//    tensor-core bf16 x bf16 (f16 x f16) GEMM accumulates in fp32 and writes f32. This is
//    what a bf16 PyTorch model does to its activations; against the CPU reference (which
//    widens w and keeps x in f32) it adds one bf16 rounding of x (relative 2^-9 per element).
//    f16 activations overflow above 65504, as in an f16 PyTorch model.
// The handle uses a fixed 32 MiB workspace allocated at construction, so no GEMM allocates.
// Not thread-safe; one Blas per backend. Construction needs a device (throws otherwise).
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/core/dtype.h"

namespace fot::kernels::cuda {

class Blas {
  public:
    // On the current device, ordered on `stream` (a cudaStream_t).
    explicit Blas(void* stream);
    ~Blas();
    Blas(const Blas&) = delete;
    Blas& operator=(const Blas&) = delete;

    // x is f32, or already in w's type (bf16/f16: rounded by the op that produced it, e.g.
    // rmsnorm with a bf16 output); then it is used as is and x_lowp is not touched.
    void matmul(float* out,     // (T, N)
                const void* x,  // (T, K) in x_dtype
                DType x_dtype,
                const void* w,  // (N, K) in w_dtype (f32, bf16 or f16)
                DType w_dtype, int64_t T, int64_t N, int64_t K,
                void* x_lowp);  // (T, K) of w_dtype; unused for f32 w or x in w's type

    // `batch` matmuls of one x: out + i * out_stride = x * (w + i * w_stride)^T (strides in
    // elements), as one cublasGemmStridedBatchedEx call (q|k|v, gate|up in prefill: one launch,
    // and cuBLAS tiles the three problems as one grid). Each result is matmul's up to the order
    // of the fp32 sums (cuBLAS may pick another kernel for a batch). x_lowp as for matmul.
    void matmul_batched(float* out, int64_t out_stride, const void* x, DType x_dtype, const void* w,
                        int64_t w_stride, DType w_dtype, int64_t batch, int64_t T, int64_t N,
                        int64_t K, void* x_lowp);

    // Bytes of `x_lowp` that matmul needs for this shape and input.
    static size_t scratch_bytes(DType x_dtype, DType w_dtype, int64_t T, int64_t K);

  private:
    void* handle_ = nullptr;     // cublasHandle_t
    void* stream_ = nullptr;     // cudaStream_t
    void* workspace_ = nullptr;  // device memory for cuBLAS
};

}  // namespace fot::kernels::cuda
