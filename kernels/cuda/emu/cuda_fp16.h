// CUDA emulator: <cuda_fp16.h> with the conversions fotrt uses (see cuda_runtime.h).
// __float2half_rn rounds to nearest even with IEEE overflow and subnormals, as CUDA's does.
#pragma once
#include "cuda_runtime.h"
#include "runtime/core/dtype.h"

struct __half {
    unsigned short x;
};
inline float __half2float(__half h) {
    return fot::f16_to_f32(h.x);
}
inline __half __float2half_rn(float f) {
    return __half{fot::f32_to_f16(f)};
}
