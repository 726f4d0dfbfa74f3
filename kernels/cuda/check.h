// FOT_CUDA_CHECK: wraps a CUDA runtime call; on failure throws fot::Error naming the call,
// the location and cudaGetErrorString. Host code: included by .cu files and by the CUDA
// backend's .cpp files (CUDA builds only).
#pragma once

#include <cuda_runtime.h>

#include "runtime/core/status.h"

#define FOT_CUDA_CHECK(expr)                                                               \
    do {                                                                                   \
        cudaError_t fot_err_ = (expr);                                                     \
        if (fot_err_ != cudaSuccess) {                                                     \
            FOT_THROW("CUDA error: ", #expr, " failed at ", __FILE__, ":", __LINE__, ": ", \
                      cudaGetErrorString(fot_err_));                                       \
        }                                                                                  \
    } while (0)
