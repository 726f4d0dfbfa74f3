// cublas_api(): the cuBLAS entry points fotrt calls, loaded with dlopen on first use.
//
// Why not link libcublas: its library (and libcublasLt, which it needs) runs static
// initialisers at process start that fault in ~100 MB and take ~0.4 s of CPU, in every process
// and every MPI rank of a CUDA-enabled build, even a CPU run or `fotrt --help`. Loaded here,
// only a process that constructs a CudaBackend (kernels/cuda/blas.h) pays for it, and a
// CUDA-enabled fotrt starts on a machine whose CUDA installation has no cuBLAS.
//
// Contract: the first call loads libcublas.so.<major of the headers fotrt was compiled with>
// (the dynamic linker's search: LD_LIBRARY_PATH, the executable's run path, the cache; then
// the directory libcudart was loaded from) and resolves every entry point; it throws a
// one-line fot::Error saying what to install or set when the library or a symbol is missing.
// Later calls return the same table (thread-safe). The library stays loaded.
// In the CUDA emulator's build (FOT_CUDA_EMU_BUILD) the table holds the emulator's functions.
#pragma once

#include <cublas_v2.h>

#include <string>

namespace fot::kernels::cuda {

struct CublasApi {
    cublasStatus_t (*create)(cublasHandle_t*);
    cublasStatus_t (*destroy)(cublasHandle_t);
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
    cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t);
    cublasStatus_t (*set_workspace)(cublasHandle_t, void*, size_t);
    const char* (*status_string)(cublasStatus_t);
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                              const void*, const void*, cudaDataType_t, int, const void*,
                              cudaDataType_t, int, const void*, void*, cudaDataType_t, int,
                              cublasComputeType_t, cublasGemmAlgo_t);
    cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                                              int, int, int, const void*, const void*,
                                              cudaDataType_t, int, long long, const void*,
                                              cudaDataType_t, int, long long, const void*, void*,
                                              cudaDataType_t, int, long long, int,
                                              cublasComputeType_t, cublasGemmAlgo_t);
};

const CublasApi& cublas_api();

// The loader behind cublas_api(), for tests: loads `library` (a file name or path) and
// resolves the table from it; throws as cublas_api() does. Not cached.
CublasApi load_cublas_api(const std::string& library);

// The file name cublas_api() loads first ("libcublas.so.13" with CUDA 13's headers).
std::string cublas_library_name();

}  // namespace fot::kernels::cuda
