// Decode-sized matmuls (T <= 4 tokens) over bf16/f16 weights: each weight row is widened in
// registers on its way into the FMAs, one pass over the weights and no f32 copy of the row.
// Decode is bound by reading the weights once per token; widening a row into a buffer and
// then dotting the buffer (the portable path in matmul.cpp) made two passes over it and spent
// 40% of a CPU decode step in them (perf, fot_cpu_bench at 2 threads).
//
// Sum order, the same on both instruction sets (so a result does not depend on which one a
// machine has): 32 lanes of FMAs, lane l over k = l (mod 32) in order (AVX-512: 2 vectors of
// 16, AVX2: 4 of 8), a last block of 16 into lanes 0-15, then lanes l and l + 16 added, then
// l and l + 8, then the same 8-lane tree, then the last < 16 products in order. A row's result
// depends only on its token's x and the row, not on T (a decode step of B sequences gives each
// its own forward's bits).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/gemv_lowp.h"
#include "kernels/cpu/ops.h"
#include "runtime/core/status.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace fot::kernels::cpu {
namespace {

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
// GCC 12 reports its own _mm512 intrinsics (their undefined-vector helpers) as uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// ---- AVX2 + FMA (+ F16C for f16): 8 weights per vector ----
template <bool kBf16>
__attribute__((target("avx2,fma,f16c"))) inline __m256 widen8(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (kBf16) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
        return _mm256_cvtph_ps(h);
    }
}

// The 8-lane tree both instruction sets end with.
__attribute__((target("avx2,fma"))) inline float hsum8(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 d = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

// The products of k in [k0, K), in order.
template <bool kBf16>
inline float tail(float acc, const float* x, const uint16_t* row, int64_t k0, int64_t K) {
    for (int64_t j = k0; j < K; ++j) {
        acc = std::fma(x[j], kBf16 ? bf16_to_f32(row[j]) : f16_to_f32(row[j]), acc);
    }
    return acc;
}

template <bool kBf16, int kT>
__attribute__((target("avx2,fma,f16c"))) void rows_avx2(float* out, const float* x,
                                                        const uint16_t* w, int64_t N, int64_t K,
                                                        int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
        const uint16_t* row = w + n * K;
        __m256 a[kT][4];  // a[t][u] lane l: k = 8u + l (mod 32)
        for (int t = 0; t < kT; ++t) {
            for (int u = 0; u < 4; ++u) a[t][u] = _mm256_setzero_ps();
        }
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) {
            __m256 wv[4];
            for (int u = 0; u < 4; ++u) wv[u] = widen8<kBf16>(row + k + 8 * u);
            for (int t = 0; t < kT; ++t) {
                for (int u = 0; u < 4; ++u) {
                    a[t][u] =
                        _mm256_fmadd_ps(wv[u], _mm256_loadu_ps(x + t * K + k + 8 * u), a[t][u]);
                }
            }
        }
        if (k + 16 <= K) {
            const __m256 w0 = widen8<kBf16>(row + k), w1 = widen8<kBf16>(row + k + 8);
            for (int t = 0; t < kT; ++t) {
                a[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * K + k), a[t][0]);
                a[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + t * K + k + 8), a[t][1]);
            }
            k += 16;
        }
        for (int t = 0; t < kT; ++t) {
            const __m256 h =
                _mm256_add_ps(_mm256_add_ps(a[t][0], a[t][2]), _mm256_add_ps(a[t][1], a[t][3]));
            out[t * N + n] = tail<kBf16>(hsum8(h), x + t * K, row, k, K);
        }
    }
}

// ---- AVX-512: 16 weights per vector ----
template <bool kBf16>
__attribute__((target("avx512f,avx2,fma,f16c"))) inline __m512 widen16(const uint16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (kBf16) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
        return _mm512_cvtph_ps(h);
    }
}

template <bool kBf16, int kT>
__attribute__((target("avx512f,avx2,fma,f16c"))) void rows_avx512(float* out, const float* x,
                                                                  const uint16_t* w, int64_t N,
                                                                  int64_t K, int64_t n0,
                                                                  int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
        const uint16_t* row = w + n * K;
        __m512 a0[kT], a1[kT];  // lane l: k = l / k = 16 + l (mod 32)
        for (int t = 0; t < kT; ++t) a0[t] = a1[t] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) {
            const __m512 w0 = widen16<kBf16>(row + k), w1 = widen16<kBf16>(row + k + 16);
            for (int t = 0; t < kT; ++t) {
                a0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + t * K + k), a0[t]);
                a1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + t * K + k + 16), a1[t]);
            }
        }
        if (k + 16 <= K) {
            const __m512 w0 = widen16<kBf16>(row + k);
            for (int t = 0; t < kT; ++t) {
                a0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + t * K + k), a0[t]);
            }
            k += 16;
        }
        for (int t = 0; t < kT; ++t) {
            const __m512 s = _mm512_add_ps(a0[t], a1[t]);
            const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1));
            const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), hi);
            out[t * N + n] = tail<kBf16>(hsum8(h), x + t * K, row, k, K);
        }
    }
}

// ---- o[d] += sum_j p[j] * v_j[d] over bf16 rows: per d, one FMA per j in order (any
// vector width gives the same bits) ----
inline void axpy_tail(float* o, const float* p, const uint16_t* v, int64_t n, int64_t D,
                      int64_t d0) {
    for (int64_t d = d0; d < D; ++d) {
        float acc = o[d];
        for (int64_t j = 0; j < n; ++j) acc = std::fma(p[j], bf16_to_f32(v[j * D + d]), acc);
        o[d] = acc;
    }
}

__attribute__((target("avx2,fma,f16c"))) void axpy_avx2(float* o, const float* p, const uint16_t* v,
                                                        int64_t n, int64_t D) {
    int64_t d0 = 0;
    for (; d0 + 8 <= D; d0 += 8) {
        __m256 acc = _mm256_loadu_ps(o + d0);
        for (int64_t j = 0; j < n; ++j) {
            acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), widen8<true>(v + j * D + d0), acc);
        }
        _mm256_storeu_ps(o + d0, acc);
    }
    axpy_tail(o, p, v, n, D, d0);
}

__attribute__((target("avx512f,avx2,fma,f16c"))) void axpy_avx512(float* o, const float* p,
                                                                  const uint16_t* v, int64_t n,
                                                                  int64_t D) {
    int64_t d0 = 0;
    for (; d0 + 16 <= D; d0 += 16) {
        __m512 acc = _mm512_loadu_ps(o + d0);
        for (int64_t j = 0; j < n; ++j) {
            acc = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), widen16<true>(v + j * D + d0), acc);
        }
        _mm512_storeu_ps(o + d0, acc);
    }
    axpy_tail(o, p, v, n, D, d0);
}

#pragma GCC diagnostic pop

using RowsFn = void (*)(float*, const float*, const uint16_t*, int64_t, int64_t, int64_t, int64_t);

template <bool kBf16>
RowsFn pick(GemvIsa isa, int64_t T) {
    const bool avx512 = isa == GemvIsa::kAvx512;
    switch (T) {
        case 1:
            return avx512 ? rows_avx512<kBf16, 1> : rows_avx2<kBf16, 1>;
        case 2:
            return avx512 ? rows_avx512<kBf16, 2> : rows_avx2<kBf16, 2>;
        case 3:
            return avx512 ? rows_avx512<kBf16, 3> : rows_avx2<kBf16, 3>;
        case 4:
            return avx512 ? rows_avx512<kBf16, 4> : rows_avx2<kBf16, 4>;
        default:
            return nullptr;
    }
}

GemvIsa detect_isa() {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
          __builtin_cpu_supports("f16c"))) {
        return GemvIsa::kNone;
    }
    // FOT_CPU_AVX512=0 keeps the AVX2 kernels (for comparisons), as for the softmax passes.
    const char* e = std::getenv("FOT_CPU_AVX512");
    const bool off = e && std::strcmp(e, "0") == 0;
    return __builtin_cpu_supports("avx512f") && !off ? GemvIsa::kAvx512 : GemvIsa::kAvx2;
}
#endif

}  // namespace

GemvIsa gemv_lowp_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
    static const GemvIsa isa = detect_isa();
    return isa;
#else
    return GemvIsa::kNone;
#endif
}

bool gemv_lowp_isa_available(GemvIsa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("f16c");
    switch (isa) {
        case GemvIsa::kAvx2:
            return avx2;
        case GemvIsa::kAvx512:
            return avx2 && __builtin_cpu_supports("avx512f");
        case GemvIsa::kNone:
            return false;
    }
#endif
    return false;
}

void dot_rows_bf16(float* out, const float* q, const uint16_t* k, int64_t n, int64_t D,
                   GemvIsa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == GemvIsa::kAvx512) return rows_avx512<true, 1>(out, q, k, n, D, 0, n);
    if (isa == GemvIsa::kAvx2) return rows_avx2<true, 1>(out, q, k, n, D, 0, n);
#endif
    FOT_ASSERT(false && "dot_rows_bf16 without AVX2 or AVX-512");
}

void axpy_rows_bf16(float* o, const float* p, const uint16_t* v, int64_t n, int64_t D,
                    GemvIsa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == GemvIsa::kAvx512) return axpy_avx512(o, p, v, n, D);
    if (isa == GemvIsa::kAvx2) return axpy_avx2(o, p, v, n, D);
#endif
    FOT_ASSERT(false && "axpy_rows_bf16 without AVX2 or AVX-512");
}

bool gemv_lowp(float* out, const float* x, const void* w, DType w_dtype, int64_t T, int64_t N,
               int64_t K, GemvIsa isa) {
    if (w_dtype != DType::kBF16 && w_dtype != DType::kF16) return false;
    if (T < 1 || T > kGemvLowpMaxT || !gemv_lowp_isa_available(isa)) return false;
#if defined(__x86_64__) && defined(__GNUC__)
    const RowsFn rows = w_dtype == DType::kBF16 ? pick<true>(isa, T) : pick<false>(isa, T);
    const auto* wp = static_cast<const uint16_t*>(w);
#pragma omp parallel if (T * N * K > kParallelMinWork)
    {
        // Contiguous slices of rows: each thread streams its own part of the weights.
        const int64_t nth = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t per = (N + nth - 1) / nth;
        const int64_t n0 = std::min(N, me * per), n1 = std::min(N, n0 + per);
        if (n1 > n0) rows(out, x, wp, N, K, n0, n1);
    }
    return true;
#else
    (void)out;
    (void)x;
    (void)w;
    (void)N;
    (void)K;
    return false;
#endif
}

}  // namespace fot::kernels::cpu
