// CUDA emulator: <cuda_bf16.h> with the conversions fotrt uses (see cuda_runtime.h).
#pragma once
#include "cuda_runtime.h"
#include "runtime/core/dtype.h"

struct __nv_bfloat16_raw {
    unsigned short x;
};
struct __nv_bfloat16 {
    unsigned short x;
    __nv_bfloat16() = default;
    __nv_bfloat16(__nv_bfloat16_raw r) : x(r.x) {}  // NOLINT: implicit, as in CUDA
};
inline float __bfloat162float(__nv_bfloat16 b) {
    return fot::bf16_to_f32(b.x);
}
