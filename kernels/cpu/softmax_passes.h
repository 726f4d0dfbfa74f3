// The softmax passes of the CPU attention tiles (kernels/cpu/attention.cpp) over one row of
// scores, and the exp they use. On x86-64 they run as AVX-512 or AVX2 intrinsics when the CPU
// has them (checked at run time; FOT_CPU_AVX512=0 keeps AVX2), else as scalar loops. The
// AVX-512 and AVX2 passes give the same bits; the scalar ones may differ from them in the
// last bits of the sum (one accumulator instead of eight).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace fot::kernels::cpu {

// exp(x) for x <= 0 (softmax arguments) without a libm call, so loops vectorise. Cephes-style
// range reduction x = n ln2 + r and a degree-6 polynomial: relative error ~2e-7; exp(-inf)
// and arguments below -87 give exactly 0, like expf's underflow.
// Branch-free (std::floor, std::bit_cast, selects) so that GCC vectorises the loops that call
// it: with a truncate-and-compare floor and a memcpy it left the softmax's exp loop scalar
// ("control flow in loop"), 41% of a 16k prefill's samples (perf, 2026-11-30). The floor is
// exact either way, so the values are the same.
inline float fast_exp(float x) {
    const float xc = std::max(x, -87.0f);
    const float fx = std::floor(xc * 1.44269504088896341f + 0.5f);
    float r = xc - fx * 0.693359375f;
    r -= fx * -2.12194440e-4f;
    const float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    const float p2 = std::bit_cast<float>((static_cast<int32_t>(fx) + 127) << 23);
    return x < -87.0f ? 0.0f : y * p2;
}

// s[0, n) *= scale; returns the max (-inf for n = 0).
float scale_and_max(float* s, int64_t n, float scale);
// s[j] = fast_exp(s[j] - m) for j < n; returns their sum.
float exp_and_sum(float* s, int64_t n, float m);

// For tests: the passes of one instruction set (available() says whether this CPU has it).
enum class SoftmaxIsa { kScalar, kAvx2, kAvx512 };
bool softmax_isa_available(SoftmaxIsa isa);
float scale_and_max_with(SoftmaxIsa isa, float* s, int64_t n, float scale);
float exp_and_sum_with(SoftmaxIsa isa, float* s, int64_t n, float m);

}  // namespace fot::kernels::cpu
