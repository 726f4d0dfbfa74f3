// cuBLAS GEMMs for CudaBackend (see blas.h for the precision contract).
#include "kernels/cuda/blas.h"

#include <cuda_runtime_api.h>

#include <climits>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cublas_api.h"
#include "kernels/cuda/ops.h"
#include "runtime/core/status.h"

namespace fot::kernels::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

#define FOT_CUBLAS_CHECK(expr)                                                               \
    do {                                                                                     \
        cublasStatus_t fot_st_ = (expr);                                                     \
        if (fot_st_ != CUBLAS_STATUS_SUCCESS) {                                              \
            FOT_THROW("cuBLAS error: ", #expr, " failed at ", __FILE__, ":", __LINE__, ": ", \
                      cublas_api().status_string(fot_st_));                                  \
        }                                                                                    \
    } while (0)

cublasHandle_t as_handle(void* h) {
    return static_cast<cublasHandle_t>(h);
}

}  // namespace

Blas::Blas(void* stream) : stream_(stream) {
    const CublasApi& api = cublas_api();  // loads cuBLAS on first use
    cublasHandle_t h = nullptr;
    FOT_CUBLAS_CHECK(api.create(&h));
    handle_ = h;
    try {
        FOT_CUBLAS_CHECK(api.set_stream(h, static_cast<cudaStream_t>(stream)));
        // Default math mode: COMPUTE_32F stays true fp32 (no TF32), tensor cores for bf16/f16.
        FOT_CUBLAS_CHECK(api.set_math_mode(h, CUBLAS_DEFAULT_MATH));
        FOT_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
        FOT_CUBLAS_CHECK(api.set_workspace(h, workspace_, kWorkspaceBytes));
    } catch (...) {
        if (workspace_) cudaFree(workspace_);
        api.destroy(h);
        throw;
    }
}

Blas::~Blas() {
    if (handle_) cublas_api().destroy(as_handle(handle_));
    if (workspace_) cudaFree(workspace_);
}

size_t Blas::scratch_bytes(DType x_dtype, DType w_dtype, int64_t T, int64_t K) {
    if (w_dtype == DType::kF32 || x_dtype == w_dtype) return 0;
    return static_cast<size_t>(T) * static_cast<size_t>(K) * dtype_size(w_dtype);
}

void Blas::matmul(float* out, const void* x, DType x_dtype, const void* w, DType w_dtype, int64_t T,
                  int64_t N, int64_t K, void* x_lowp) {
    matmul_batched(out, 0, x, x_dtype, w, 0, w_dtype, 1, T, N, K, x_lowp);
}

void Blas::matmul_batched(float* out, int64_t out_stride, const void* x, DType x_dtype,
                          const void* w, int64_t w_stride, DType w_dtype, int64_t batch, int64_t T,
                          int64_t N, int64_t K, void* x_lowp) {
    if (T == 0 || N == 0 || batch == 0) return;
    FOT_CHECK(T <= INT_MAX && N <= INT_MAX && K <= INT_MAX && batch <= INT_MAX,
              "cuda matmul: shape [", T, ", ", K, "] x [", N, ", ", K, "]^T (x ", batch,
              ") exceeds cuBLAS's int dimensions");
    const float alpha = 1.0f, beta = 0.0f;
    cudaDataType_t wt = CUDA_R_32F;
    const void* xb = x;
    switch (w_dtype) {
        case DType::kF32:
            break;
        case DType::kBF16:
            wt = CUDA_R_16BF;
            break;
        case DType::kF16:
            wt = CUDA_R_16F;
            break;
        default:
            FOT_THROW("cuda matmul: weight dtype ", dtype_name(w_dtype),
                      " is not supported (expected f32, bf16 or f16)");
    }
    FOT_CHECK(x_dtype == DType::kF32 || x_dtype == w_dtype, "cuda matmul: input dtype ",
              dtype_name(x_dtype), " with ", dtype_name(w_dtype), " weights (expected f32 or ",
              dtype_name(w_dtype), ")");
    if (w_dtype != DType::kF32 && x_dtype == DType::kF32) {
        FOT_ASSERT(x_lowp != nullptr);
        convert_from_f32(x_lowp, w_dtype, static_cast<const float*>(x), T * K, stream_);
        xb = x_lowp;
    }
    // Column-major view: out^T [N, T] = w [N, K] (op T of the col-major [K, N]) * x^T [K, T].
    const int n = static_cast<int>(N), t = static_cast<int>(T), k = static_cast<int>(K);
    if (batch == 1) {
        FOT_CUBLAS_CHECK(cublas_api().gemm_ex(as_handle(handle_), CUBLAS_OP_T, CUBLAS_OP_N, n, t, k,
                                              &alpha, w, wt, k, xb, wt, k, &beta, out, CUDA_R_32F,
                                              n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return;
    }
    // x is shared: stride 0.
    FOT_CUBLAS_CHECK(cublas_api().gemm_strided_batched_ex(
        as_handle(handle_), CUBLAS_OP_T, CUBLAS_OP_N, n, t, k, &alpha, w, wt, k, w_stride, xb, wt,
        k, 0, &beta, out, CUDA_R_32F, n, out_stride, static_cast<int>(batch), CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
}

}  // namespace fot::kernels::cuda
