// Host-callable launchers of the CUDA kernels. No CUDA syntax here, so .cpp files may
// include it. Pointers are device pointers; the stream (a cudaStream_t, may be null) is the
// last argument. Launchers check their arguments and the launch (cudaGetLastError) and throw
// fot::Error on failure; kernels never throw.
#pragma once

#include <cstdint>

namespace fot::kernels::cuda {

// Number of visible CUDA devices; 0 when there is no device or no driver (never throws).
int device_count();

// out = a + b over n floats.
void add(float* out, const float* a, const float* b, int64_t n, void* stream);

}  // namespace fot::kernels::cuda
