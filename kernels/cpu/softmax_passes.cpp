// The softmax passes (softmax_passes.h): scalar, AVX2 and AVX-512 versions.
#include "kernels/cpu/softmax_passes.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace fot::kernels::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The softmax passes over one row of a score tile: s *= scale with the max, then
// s = fast_exp(s - m) with the sum. GCC 12 vectorised neither as plain or `omp simd` loops
// (its reports: "no vectype for stmt" on the loads; perf showed scalar vmulss / vmaxss and a
// scalar exp, 41% of a 16k fast prefill, 2026-11-30), so on CPUs with AVX2 and FMA (checked
// at run time) they run as 8-lane intrinsics: fast_exp's operations lane by lane (its
// multiply-adds as FMAs), the sum in 8 lanes added in lane order at the end, the max
// order-free. Elsewhere, and for the last n % 8 elements, the scalar loops.
float scale_and_max_scalar(float* s, int64_t j, int64_t n, float scale, float m) {
    for (; j < n; ++j) {
        s[j] *= scale;
        m = std::max(m, s[j]);
    }
    return m;
}
float exp_and_sum_scalar(float* s, int64_t j, int64_t n, float m, float sum) {
    for (; j < n; ++j) {
        s[j] = fast_exp(s[j] - m);
        sum += s[j];
    }
    return sum;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) float scale_and_max_avx2(float* s, int64_t n, float scale) {
    const __m256 sc = _mm256_set1_ps(scale);
    __m256 mx = _mm256_set1_ps(kNegInf);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + j), sc);
        _mm256_storeu_ps(s + j, v);
        mx = _mm256_max_ps(mx, v);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, mx);
    float m = kNegInf;
    for (float v : lanes) m = std::max(m, v);
    return scale_and_max_scalar(s, j, n, scale, m);
}

// fast_exp on 8 lanes.
__attribute__((target("avx2,fma"))) __m256 fast_exp8(__m256 x) {
    const __m256 xc = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 fx = _mm256_floor_ps(
        _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    const __m256 z = _mm256_mul_ps(r, r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, z, r), _mm256_set1_ps(1.0f));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    const __m256 v = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
    return _mm256_andnot_ps(under, v);  // below -87 (and -inf): exactly 0
}

__attribute__((target("avx2,fma"))) float exp_and_sum_avx2(float* s, int64_t n, float m) {
    const __m256 mv = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 p = fast_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(s + j, p);
        acc = _mm256_add_ps(acc, p);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    float sum = 0.f;
    for (float v : lanes) sum += v;
    return exp_and_sum_scalar(s, j, n, m, sum);
}

// The same passes on 16 lanes where AVX-512F is there: fast_exp16 is fast_exp8 lane by lane
// (the same operations; the floor by roundscale, which is exact like vroundps), and the sum
// adds each 16-block's low then high 8 lanes into the 8-lane accumulator, so the bits are
// those of the AVX2 passes: results do not depend on which of the two a CI machine has.
// GCC 12's AVX-512 headers trip its own -Wmaybe-uninitialized here (GCC PR 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx2,fma"))) __m512 fast_exp16(__m512 x) {
    const __m512 xc = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 fx = _mm512_roundscale_ps(
        _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
    const __m512 z = _mm512_mul_ps(r, r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_add_ps(_mm512_fmadd_ps(y, z, r), _mm512_set1_ps(1.0f));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
    const __m512 v = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), v);  // below -87: exactly 0
}

__attribute__((target("avx512f,avx2,fma"))) float scale_and_max_avx512(float* s, int64_t n,
                                                                       float scale) {
    const __m512 sc = _mm512_set1_ps(scale);
    __m512 mx = _mm512_set1_ps(kNegInf);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(s + j), sc);
        _mm512_storeu_ps(s + j, v);
        mx = _mm512_max_ps(mx, v);
    }
    float m = _mm512_reduce_max_ps(mx);  // order-free
    if (j + 8 <= n) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + j), _mm256_set1_ps(scale));
        _mm256_storeu_ps(s + j, v);
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, v);
        for (float x : lanes) m = std::max(m, x);
        j += 8;
    }
    return scale_and_max_scalar(s, j, n, scale, m);
}

__attribute__((target("avx512f,avx2,fma"))) float exp_and_sum_avx512(float* s, int64_t n, float m) {
    const __m512 mv = _mm512_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 p = fast_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), mv));
        _mm512_storeu_ps(s + j, p);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(p));
        acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1)));
    }
    if (j + 8 <= n) {
        const __m256 p = fast_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), _mm256_set1_ps(m)));
        _mm256_storeu_ps(s + j, p);
        acc = _mm256_add_ps(acc, p);
        j += 8;
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    float sum = 0.f;
    for (float v : lanes) sum += v;
    return exp_and_sum_scalar(s, j, n, m, sum);
}

#pragma GCC diagnostic pop

bool detect_avx2_fma() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
const bool kHaveAvx2Fma = detect_avx2_fma();
// FOT_CPU_AVX512=0 keeps the AVX2 passes (for comparisons; the same bits).
bool detect_avx512() {
    __builtin_cpu_init();
    const char* e = std::getenv("FOT_CPU_AVX512");
    return kHaveAvx2Fma && __builtin_cpu_supports("avx512f") && !(e && std::strcmp(e, "0") == 0);
}
const bool kHaveAvx512 = detect_avx512();
#endif

}  // namespace

float scale_and_max(float* s, int64_t n, float scale) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (kHaveAvx512) return scale_and_max_avx512(s, n, scale);
    if (kHaveAvx2Fma) return scale_and_max_avx2(s, n, scale);
#endif
    return scale_and_max_scalar(s, 0, n, scale, kNegInf);
}
float exp_and_sum(float* s, int64_t n, float m) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (kHaveAvx512) return exp_and_sum_avx512(s, n, m);
    if (kHaveAvx2Fma) return exp_and_sum_avx2(s, n, m);
#endif
    return exp_and_sum_scalar(s, 0, n, m, 0.f);
}

bool softmax_isa_available(SoftmaxIsa isa) {
    switch (isa) {
        case SoftmaxIsa::kScalar:
            return true;
#if defined(__x86_64__) && defined(__GNUC__)
        case SoftmaxIsa::kAvx2:
            return kHaveAvx2Fma;
        case SoftmaxIsa::kAvx512:
            return kHaveAvx2Fma && __builtin_cpu_supports("avx512f");
#endif
        default:
            return false;
    }
}

float scale_and_max_with(SoftmaxIsa isa, float* s, int64_t n, float scale) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == SoftmaxIsa::kAvx512 && softmax_isa_available(isa))
        return scale_and_max_avx512(s, n, scale);
    if (isa == SoftmaxIsa::kAvx2 && softmax_isa_available(isa))
        return scale_and_max_avx2(s, n, scale);
#endif
    return scale_and_max_scalar(s, 0, n, scale, kNegInf);
}

float exp_and_sum_with(SoftmaxIsa isa, float* s, int64_t n, float m) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == SoftmaxIsa::kAvx512 && softmax_isa_available(isa))
        return exp_and_sum_avx512(s, n, m);
    if (isa == SoftmaxIsa::kAvx2 && softmax_isa_available(isa)) return exp_and_sum_avx2(s, n, m);
#endif
    return exp_and_sum_scalar(s, 0, n, m, 0.f);
}

}  // namespace fot::kernels::cpu
