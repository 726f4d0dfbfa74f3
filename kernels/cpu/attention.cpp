// Attention partials over blocks of keys with an online softmax (flash-attention order).
// Work is split over (head, block of queries); keys stream in blocks that are widened to
// f32 once per (head, query block) when stored in bf16/f16.
//
// Two paths with the same arithmetic contract:
//  - many queries (prefill windows): scores and the weighted value sums of a (query block,
//    key block) tile are single-threaded BLAS GEMMs inside OpenMP work items, and the
//    exponentials use a vectorisable exp (fast_exp, ~2 ulp);
//  - few queries (decode): dot products per key, no tile set-up. Over bf16 stores on CPUs with
//    AVX2 or AVX-512 the key and value rows are widened in registers on their way into the
//    FMAs (gemv_lowp.h: dot_rows_bf16, axpy_rows_bf16), not into a buffer first: decode reads
//    the whole memory once per token, and the buffer pass doubled the work per byte.
// Precision::kFast (`bf16_operands`, runtime/core/precision.h): q, k and v are rounded to bf16
// (nearest even) as they enter the tiles, the products accumulate in fp32, the softmax
// statistics (m, l) are fp32 and p = exp(s - m) is rounded to bf16 only as the operand of
// P.V (after it was summed into l). Exact mode takes none of these branches. On CPUs with
// AMX, `fast` over bf16 stores runs both products on AMX tiles (the scores by matmul_bf16_dot
// with the keys read in place, P.V by matmul_bf16_xv, added into o) instead of SGEMMs on the
// widened operands: the same bf16 operands and fp32 sums, in another order. CPUs with
// AVX512_BF16 and no AMX (AMD Zen 4/5) run them on vdpbf16ps the same way
// (fast_bf16_dot_kernel(): the kernel that `fast` GEMMs take).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <cblas.h>

#include "kernels/cpu/gemv_lowp.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/softmax_passes.h"

namespace fot::kernels::cpu {
namespace {

constexpr int64_t kQueryBlock = 16;
constexpr int64_t kKeyBlock = 128;
constexpr int64_t kGemmMinQueries = 8;  // at or above: the BLAS tile path
constexpr int64_t kGemmQueryBlock = 64;
constexpr int64_t kGemmKeyBlock = 256;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

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
    // `fast` over bf16 stores on a CPU with AMX or AVX512_BF16: both products on the bf16
    // kernel (qh is then the contiguous rounded copy of the query block, as matmul_bf16_dot
    // wants it).
    const Bf16DotKernel dot_kernel = fast_bf16_dot_kernel();
    const bool bf16_dot =
        bf16_operands && kv_dtype == DType::kBF16 && dot_kernel != Bf16DotKernel::kEmulated;
#pragma omp parallel if (H * T * S * D > kParallelMinWork)
    {
        std::vector<float> kbuf, vbuf, qbuf;
        if (kv_dtype != DType::kF32 || bf16_operands) {
            kbuf.resize(static_cast<size_t>(kGemmKeyBlock * D));
            vbuf.resize(static_cast<size_t>(kGemmKeyBlock * D));
        }
        if (bf16_operands) qbuf.resize(static_cast<size_t>(kGemmQueryBlock * D));
        std::vector<float> sc(static_cast<size_t>(kGemmQueryBlock * kGemmKeyBlock));
        std::vector<float> pv(bf16_dot ? static_cast<size_t>(kGemmQueryBlock * D) : 0);
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
                    const float* vr = bf16_dot ? nullptr
                                               : key_rows(v, kv_dtype, head_off, j0, nk, D,
                                                          vbuf.data(), bf16_operands);
                    // sc[nq, nk] = q_block . k_block^T
                    if (bf16_dot) {
                        // The bf16 keys read in place (the same bf16 operands with fp32 sums,
                        // in the kernel's order).
                        matmul_bf16_dot(sc.data(), qh,
                                        static_cast<const uint16_t*>(k) + head_off + j0 * D, nq, nk,
                                        D, dot_kernel);
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
                    if (bf16_dot) {  // the bf16 values read by the kernel's packer
                        matmul_bf16_xv(pv.data(), sc.data(),
                                       static_cast<const uint16_t*>(v) + head_off + j0 * D, D, nq,
                                       D, nk, dot_kernel);
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
    // bf16 stores are already bf16 operands: the rounding of `fast` leaves them as they are.
    const GemvIsa isa = kv_dtype == DType::kBF16 ? gemv_lowp_isa() : GemvIsa::kNone;
    const bool in_registers = isa != GemvIsa::kNone;
#pragma omp parallel if (H * T * S * D > kParallelMinWork)
    {
        std::vector<float> kbuf, vbuf, qbuf;
        if (!in_registers && (kv_dtype != DType::kF32 || bf16_operands)) {
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
                    const float *kr = nullptr, *vr = nullptr;
                    const uint16_t *kb = nullptr, *vb = nullptr;  // bf16 rows, in place
                    if (in_registers) {
                        kb = static_cast<const uint16_t*>(k) + head_off + j0 * D;
                        vb = static_cast<const uint16_t*>(v) + head_off + j0 * D;
                    } else {
                        kr = key_rows(k, kv_dtype, head_off, j0, nk, D, kbuf.data(), bf16_operands);
                        vr = key_rows(v, kv_dtype, head_off, j0, nk, D, vbuf.data(), bf16_operands);
                    }
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
                        if (in_registers) dot_rows_bf16(scores, qt, kb, n, D, isa);
                        for (int64_t j = 0; j < n; ++j) {
                            scores[j] = (in_registers ? scores[j] : dot(qt, kr + j * D, D)) * scale;
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
                        if (in_registers) {
                            axpy_rows_bf16(st, scores, vb, n, D, isa);
                        } else {
                            for (int64_t j = 0; j < n; ++j) {
                                const float p = scores[j];
                                const float* vj = vr + j * D;
#pragma omp simd
                                for (int64_t d = 0; d < D; ++d) st[d] += p * vj[d];
                            }
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
