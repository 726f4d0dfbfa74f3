// RMSNorm as the reference computes it for fp32 activations:
// variance = mean(x^2); x * rsqrt(variance + eps); weight * that.
#include <cmath>

#include "kernels/cpu/ops.h"

namespace fot::kernels::cpu {

void rmsnorm(float* out, const float* x, const float* w, int64_t T, int64_t C, float eps) {
#pragma omp parallel for schedule(static) if (T > 4)
    for (int64_t t = 0; t < T; ++t) {
        const float* xr = x + t * C;
        float* yr = out + t * C;
        float ss = 0.f;
        for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
        float inv = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
        for (int64_t c = 0; c < C; ++c) yr[c] = w[c] * (xr[c] * inv);
    }
}

}  // namespace fot::kernels::cpu
