// Attention partials over blocks of keys with an online softmax (flash-attention order).
// Work is split over (head, block of queries); keys stream in blocks that are widened to
// f32 once per (head, query block) when stored in bf16/f16.
//
// Two paths with the same arithmetic contract:
//  - many queries (prefill windows): scores and the weighted value sums of a (query block,
//    key block) tile are single-threaded BLAS GEMMs inside OpenMP work items, and the
//    exponentials use a vectorisable exp (fast_exp, ~2 ulp);
//  - few queries (decode): dot products per key, no tile set-up.
// Precision::kFast (`bf16_operands`, runtime/core/precision.h): q, k and v are rounded to bf16
// (nearest even) as they enter the tiles, the products accumulate in fp32, the softmax
// statistics (m, l) are fp32 and p = exp(s - m) is rounded to bf16 only as the operand of
// P.V (after it was summed into l). Exact mode takes none of these branches. On CPUs with
// AMX, `fast` over bf16 stores runs both products on AMX tiles (the scores by matmul_bf16_dot
// with the keys read in place, P.V by matmul_bf16_xv, added into o) instead of SGEMMs on the
// widened operands: the same bf16 operands and fp32 sums, in another order.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <cblas.h>

#include "kernels/cpu/ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace fot::kernels::cpu {
namespace {

constexpr int64_t kQueryBlock = 16;
constexpr int64_t kKeyBlock = 128;
constexpr int64_t kGemmMinQueries = 8;  // at or above: the BLAS tile path
constexpr int64_t kGemmQueryBlock = 64;
constexpr int64_t kGemmKeyBlock = 256;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

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

bool detect_avx2_fma() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
const bool kHaveAvx2Fma = detect_avx2_fma();
#endif

float scale_and_max(float* s, int64_t n, float scale) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (kHaveAvx2Fma) return scale_and_max_avx2(s, n, scale);
#endif
    return scale_and_max_scalar(s, 0, n, scale, kNegInf);
}
float exp_and_sum(float* s, int64_t n, float m) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (kHaveAvx2Fma) return exp_and_sum_avx2(s, n, m);
#endif
    return exp_and_sum_scalar(s, 0, n, m, 0.f);
}

inline float dot(const float* a, const float* b, int64_t n) {
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

inline void round_bf16_into(float* dst, const float* src, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = round_bf16(src[i]);
}

// The f32 rows [j0, j0 + n) of head h: a pointer into `base` when already f32, else widened
// into `scratch`. With `to_bf16` the values are rounded to bf16 (into `scratch`; a no-op for
// bf16 stores).
const float* key_rows(const void* base, DType dtype, int64_t head_offset, int64_t j0, int64_t n,
                      int64_t D, float* scratch, bool to_bf16 = false) {
    const size_t esz = dtype_size(dtype);
    const char* p =
        static_cast<const char*>(base) + static_cast<size_t>(head_offset + j0 * D) * esz;
    if (dtype == DType::kF32) {
        if (!to_bf16) return reinterpret_cast<const float*>(p);
        round_bf16_into(scratch, reinterpret_cast<const float*>(p), n * D);
        return scratch;
    }
    convert_to_f32(p, dtype, scratch, static_cast<size_t>(n * D));
    if (to_bf16 && dtype != DType::kBF16) round_bf16_into(scratch, scratch, n * D);
    return scratch;
}

}  // namespace

void attn_partial_init(float* part, int64_t H, int64_t T, int64_t D) {
    const int64_t row = D + 2;
    for (int64_t i = 0; i < H * T; ++i) {
        float* r = part + i * row;
        std::memset(r, 0, sizeof(float) * D);
        r[D] = kNegInf;
        r[D + 1] = 0.f;
    }
}

namespace {

void attn_accumulate_tiles(float* part, const float* q, int64_t q_stride, const void* k,
                           const void* v, DType kv_dtype, int64_t kv_head_stride, int64_t H,
                           int64_t T, int64_t S, int64_t D, float scale, int64_t causal_offset,
                           bool bf16_operands) {
    const int64_t nqb = (T + kGemmQueryBlock - 1) / kGemmQueryBlock;
    const int64_t row = D + 2;
    // `fast` over bf16 stores on a CPU with AMX: both products on AMX tiles (qh is then the
    // contiguous rounded copy of the query block, as matmul_bf16_dot wants it).
    const bool amx = bf16_operands && kv_dtype == DType::kBF16 && bf16_amx_available();
#pragma omp parallel if (H * T * S * D > kParallelMinWork)
    {
        std::vector<float> kbuf, vbuf, qbuf;
        if (kv_dtype != DType::kF32 || bf16_operands) {
            kbuf.resize(static_cast<size_t>(kGemmKeyBlock * D));
            vbuf.resize(static_cast<size_t>(kGemmKeyBlock * D));
        }
        if (bf16_operands) qbuf.resize(static_cast<size_t>(kGemmQueryBlock * D));
        std::vector<float> sc(static_cast<size_t>(kGemmQueryBlock * kGemmKeyBlock));
        std::vector<float> pv(amx ? static_cast<size_t>(kGemmQueryBlock * D) : 0);
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t qb = 0; qb < nqb; ++qb) {
                const int64_t t0 = qb * kGemmQueryBlock;
                const int64_t nq = std::min(kGemmQueryBlock, T - t0);
                const int64_t jlast = std::min(S - 1, (t0 + nq - 1) + std::min(causal_offset, S));
                const int64_t head_off = h * kv_head_stride;
                const float* qh = q + t0 * q_stride + h * D;
                int64_t qh_stride = q_stride;
                if (bf16_operands) {
                    for (int64_t i = 0; i < nq; ++i) {
                        round_bf16_into(qbuf.data() + i * D, qh + i * q_stride, D);
                    }
                    qh = qbuf.data();
                    qh_stride = D;
                }
                float* oh = part + (h * T + t0) * row;
                for (int64_t j0 = 0; j0 <= jlast; j0 += kGemmKeyBlock) {
                    const int64_t nk = std::min(kGemmKeyBlock, jlast + 1 - j0);
                    const float* vr = amx ? nullptr
                                          : key_rows(v, kv_dtype, head_off, j0, nk, D, vbuf.data(),
                                                     bf16_operands);
                    // sc[nq, nk] = q_block . k_block^T
                    if (amx) {
                        // The bf16 keys read in place by AMX tiles (the same bf16 operands
                        // with fp32 sums, in the tiles' order).
                        matmul_bf16_dot(sc.data(), qh,
                                        static_cast<const uint16_t*>(k) + head_off + j0 * D, nq, nk,
                                        D, Bf16DotKernel::kAmx);
                    } else {
                        const float* kr =
                            key_rows(k, kv_dtype, head_off, j0, nk, D, kbuf.data(), bf16_operands);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq),
                                    static_cast<int>(nk), static_cast<int>(D), 1.0f, qh,
                                    static_cast<int>(qh_stride), kr, static_cast<int>(D), 0.0f,
                                    sc.data(), static_cast<int>(nk));
                    }
                    for (int64_t i = 0; i < nq; ++i) {
                        float* srow = sc.data() + i * nk;
                        int64_t n = nk;  // visible keys of this row in the block
                        if (causal_offset < S) {
                            n = std::clamp<int64_t>(t0 + i + causal_offset + 1 - j0, 0, nk);
                        }
                        const float bmax = scale_and_max(srow, n, scale);
                        float* st = oh + i * row;
                        const float m_old = st[D];
                        const float m_new = std::max(m_old, bmax);
                        float lsum = 0.f;
                        if (n > 0) {
                            lsum = exp_and_sum(srow, n, m_new);
                            // fast: l has the fp32 p; P.V takes them rounded to bf16.
                            if (bf16_operands) round_bf16_into(srow, srow, n);
                        }
                        for (int64_t j = n; j < nk; ++j) srow[j] = 0.f;  // masked: no weight
                        const float corr = (m_old == kNegInf) ? 0.f : fast_exp(m_old - m_new);
                        if (corr != 1.f) {
                            for (int64_t d = 0; d < D; ++d) st[d] *= corr;
                        }
                        st[D] = m_new;
                        st[D + 1] = st[D + 1] * corr + lsum;
                    }
                    // o[nq, D] += p[nq, nk] . v_block[nk, D]
                    if (amx) {  // the bf16 values read by the AMX kernel's packer
                        matmul_bf16_xv(pv.data(), sc.data(),
                                       static_cast<const uint16_t*>(v) + head_off + j0 * D, D, nq,
                                       D, nk, Bf16DotKernel::kAmx);
                        for (int64_t i = 0; i < nq; ++i) {
                            float* o = oh + i * row;
                            const float* a = pv.data() + i * D;
                            for (int64_t d = 0; d < D; ++d) o[d] += a[d];
                        }
                    } else {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(nq),
                                    static_cast<int>(D), static_cast<int>(nk), 1.0f, sc.data(),
                                    static_cast<int>(nk), vr, static_cast<int>(D), 1.0f, oh,
                                    static_cast<int>(row));
                    }
                }
            }
        }
    }
}

}  // namespace

void attn_accumulate(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                     DType kv_dtype, int64_t kv_head_stride, int64_t H, int64_t T, int64_t S,
                     int64_t D, float scale, int64_t causal_offset, bool bf16_operands) {
    if (S <= 0 || T <= 0) return;
    if (T >= kGemmMinQueries) {
        attn_accumulate_tiles(part, q, q_stride, k, v, kv_dtype, kv_head_stride, H, T, S, D, scale,
                              causal_offset, bf16_operands);
        return;
    }
    const int64_t nqb = (T + kQueryBlock - 1) / kQueryBlock;
    const int64_t row = D + 2;
#pragma omp parallel if (H * T * S * D > kParallelMinWork)
    {
        std::vector<float> kbuf, vbuf, qbuf;
        if (kv_dtype != DType::kF32 || bf16_operands) {
            kbuf.resize(static_cast<size_t>(kKeyBlock * D));
            vbuf.resize(static_cast<size_t>(kKeyBlock * D));
        }
        if (bf16_operands) qbuf.resize(static_cast<size_t>(D));
        float scores[kKeyBlock];
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t qb = 0; qb < nqb; ++qb) {
                const int64_t t0 = qb * kQueryBlock;
                const int64_t t1 = std::min(T, t0 + kQueryBlock);
                // Last key any query of this block may see.
                const int64_t jlast = std::min(S - 1, (t1 - 1) + std::min(causal_offset, S));
                const int64_t head_off = h * kv_head_stride;
                for (int64_t j0 = 0; j0 <= jlast; j0 += kKeyBlock) {
                    const int64_t nk = std::min(kKeyBlock, jlast + 1 - j0);
                    const float* kr =
                        key_rows(k, kv_dtype, head_off, j0, nk, D, kbuf.data(), bf16_operands);
                    const float* vr =
                        key_rows(v, kv_dtype, head_off, j0, nk, D, vbuf.data(), bf16_operands);
                    for (int64_t t = t0; t < t1; ++t) {
                        // Keys j <= t + causal_offset are visible.
                        int64_t jend = j0 + nk;
                        if (causal_offset < S) jend = std::min(jend, t + causal_offset + 1);
                        const int64_t n = jend - j0;
                        if (n <= 0) continue;
                        const float* qt = q + t * q_stride + h * D;
                        if (bf16_operands) {
                            round_bf16_into(qbuf.data(), qt, D);
                            qt = qbuf.data();
                        }
                        float bmax = kNegInf;
                        for (int64_t j = 0; j < n; ++j) {
                            scores[j] = dot(qt, kr + j * D, D) * scale;
                            bmax = std::max(bmax, scores[j]);
                        }
                        float* st = part + (h * T + t) * row;
                        const float m_old = st[D];
                        const float m_new = std::max(m_old, bmax);
                        const float corr = (m_old == kNegInf) ? 0.f : std::exp(m_old - m_new);
                        float lsum = 0.f;
                        for (int64_t j = 0; j < n; ++j) {
                            scores[j] = std::exp(scores[j] - m_new);
                            lsum += scores[j];
                        }
                        if (bf16_operands) round_bf16_into(scores, scores, n);
                        if (corr != 1.f) {
                            for (int64_t d = 0; d < D; ++d) st[d] *= corr;
                        }
                        for (int64_t j = 0; j < n; ++j) {
                            const float p = scores[j];
                            const float* vj = vr + j * D;
#pragma omp simd
                            for (int64_t d = 0; d < D; ++d) st[d] += p * vj[d];
                        }
                        st[D] = m_new;
                        st[D + 1] = st[D + 1] * corr + lsum;
                    }
                }
            }
        }
    }
}

void attn_partial_merge(float* out, const float* parts, int64_t R, int64_t H, int64_t T,
                        int64_t D) {
    const int64_t row = D + 2;
    const int64_t rows = H * T;
#pragma omp parallel for schedule(static) if (rows * R * D > 65536)
    for (int64_t i = 0; i < rows; ++i) {
        float M = kNegInf;
        for (int64_t r = 0; r < R; ++r) M = std::max(M, parts[(r * rows + i) * row + D]);
        float acc[1024];
        float L = 0.f;
        std::fill(acc, acc + D, 0.f);
        if (M != kNegInf) {
            for (int64_t r = 0; r < R; ++r) {
                const float* p = parts + (r * rows + i) * row;
                if (p[D] == kNegInf) continue;
                const float w = std::exp(p[D] - M);
                L += p[D + 1] * w;
                for (int64_t d = 0; d < D; ++d) acc[d] += p[d] * w;
            }
        }
        float* o = out + i * row;
        std::copy(acc, acc + D, o);
        o[D] = M;
        o[D + 1] = L;
    }
}

void attn_partial_finalize(float* out, int64_t out_stride, const float* part, int64_t H, int64_t T,
                           int64_t D) {
    const int64_t row = D + 2;
#pragma omp parallel for schedule(static) if (H * T * D > 65536)
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = 0; h < H; ++h) {
            const float* p = part + (h * T + t) * row;
            float* o = out + t * out_stride + h * D;
            const float L = p[D + 1];
            if (L > 0.f) {
                const float inv = 1.0f / L;
                for (int64_t d = 0; d < D; ++d) o[d] = p[d] * inv;
            } else {
                std::memset(o, 0, sizeof(float) * D);
            }
        }
    }
}

}  // namespace fot::kernels::cpu
