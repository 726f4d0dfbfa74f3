// Exact top-k memory retrieval: per (head, query) selection of the K best keys, the global
// threshold over all ranks' candidates, and attention over the survivors.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <cblas.h>

#include "kernels/cpu/ops.h"

namespace fot::kernels::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kKeyBlock = 256;
// Prefill windows (many queries) score a (query block x key block) tile with one GEMM, like
// the dense path (attention.cpp), so a key block is widened once per query block rather than
// once per query, and only candidates that beat a row's current K-th best touch its heap.
// The GEMM only filters: its rounding depends on where a key sits in the tile (BLAS edge
// kernels), so identical keys could get different scores and break the tie-by-position rule.
// A key that may enter the heap is re-scored with dot() (the per-query path's score, the same
// for every key), and the filter allows for the GEMM's rounding (filter_slack).
constexpr int64_t kTileMinQueries = 8;
constexpr int64_t kTileQueryBlock = 64;
constexpr int64_t kTileMaxK = 1024;  // above: per-query path (64 heaps of K would not fit cache)

struct Cand {
    float score;
    int64_t pos;
    int64_t row;
};

// a before b in the candidate order.
inline bool better(float sa, int64_t pa, float sb, int64_t pb) {
    return sa > sb || (sa == sb && pa < pb);
}

inline float dot(const float* a, const float* b, int64_t n) {
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

inline bool passes(float s, int64_t p, float ts, int64_t tp) {
    return s > ts || (s == ts && p <= tp);
}

// Heap top = worst kept candidate.
inline bool worse_first(const Cand& a, const Cand& b) {
    return better(a.score, a.pos, b.score, b.pos);
}

// Offers (s, p, row) to a heap of at most K candidates.
inline void offer(std::vector<Cand>& heap, int64_t K, float s, int64_t p, int64_t row) {
    if (static_cast<int64_t>(heap.size()) < K) {
        heap.push_back({s, p, row});
        std::push_heap(heap.begin(), heap.end(), worse_first);
    } else if (better(s, p, heap.front().score, heap.front().pos)) {
        std::pop_heap(heap.begin(), heap.end(), worse_first);
        heap.back() = {s, p, row};
        std::push_heap(heap.begin(), heap.end(), worse_first);
    }
}

// Writes a heap best first into the (K) outputs, padding missing slots.
inline void emit(std::vector<Cand>& heap, int64_t K, float* scores, int64_t* rows,
                 int64_t* positions) {
    std::sort_heap(heap.begin(), heap.end(), worse_first);  // best first
    for (int64_t i = 0; i < K; ++i) {
        if (i < static_cast<int64_t>(heap.size())) {
            scores[i] = heap[i].score;
            rows[i] = heap[i].row;
            positions[i] = heap[i].pos;
        } else {
            scores[i] = kNegInf;
            rows[i] = -1;
            positions[i] = -1;
        }
    }
}

// A bound on |GEMM score - dot() score| per unit of |q| |k|: two fp32 dot products of D terms
// in any order differ from the exact one by at most D u sum|q_d k_d| each (u = 2^-24), and
// sum|q_d k_d| <= |q| |k|; the scale and the norms add a few roundings, covered by the
// factor 4 and the +2 terms.
inline float filter_slack(int64_t D, float scale) {
    return 4.f * static_cast<float>(D + 2) * 0x1p-24f * std::fabs(scale);
}

void memory_topk_tiles(float* scores, int64_t* rows, int64_t* positions, const float* q,
                       int64_t q_stride, const void* k, DType k_dtype, int64_t k_head_stride,
                       const int64_t* row_pos, int64_t H, int64_t T, int64_t S, int64_t D,
                       int64_t K, float scale) {
    const size_t esz = dtype_size(k_dtype);
    const int64_t nqb = (T + kTileQueryBlock - 1) / kTileQueryBlock;
#pragma omp parallel if (H * T * S * D > kParallelMinWork)
    {
        std::vector<float> kbuf(static_cast<size_t>(kKeyBlock * D));
        std::vector<float> sc(static_cast<size_t>(kTileQueryBlock * kKeyBlock));
        std::vector<float> knorm(static_cast<size_t>(kKeyBlock));
        std::vector<float> qnorm(static_cast<size_t>(kTileQueryBlock));
        std::vector<std::vector<Cand>> heaps(static_cast<size_t>(kTileQueryBlock));
        for (auto& hp : heaps) hp.reserve(static_cast<size_t>(K) + 1);
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t qb = 0; qb < nqb; ++qb) {
                const int64_t t0 = qb * kTileQueryBlock;
                const int64_t nq = std::min(kTileQueryBlock, T - t0);
                for (int64_t i = 0; i < nq; ++i) {
                    heaps[size_t(i)].clear();
                    const float* qt = q + (t0 + i) * q_stride + h * D;
                    qnorm[size_t(i)] = std::sqrt(dot(qt, qt, D));
                }
                for (int64_t j0 = 0; j0 < S; j0 += kKeyBlock) {
                    const int64_t n = std::min(kKeyBlock, S - j0);
                    const char* src = static_cast<const char*>(k) +
                                      static_cast<size_t>(h * k_head_stride + j0 * D) * esz;
                    const float* kr;
                    if (k_dtype == DType::kF32) {
                        kr = reinterpret_cast<const float*>(src);
                    } else {
                        convert_to_f32(src, k_dtype, kbuf.data(), static_cast<size_t>(n * D));
                        kr = kbuf.data();
                    }
                    // sc[nq, n] = q_block . k_block^T
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq),
                                static_cast<int>(n), static_cast<int>(D), scale,
                                q + t0 * q_stride + h * D, static_cast<int>(q_stride), kr,
                                static_cast<int>(D), 0.0f, sc.data(), static_cast<int>(n));
                    for (int64_t j = 0; j < n; ++j) {
                        knorm[size_t(j)] = std::sqrt(dot(kr + j * D, kr + j * D, D));
                    }
                    for (int64_t i = 0; i < nq; ++i) {
                        std::vector<Cand>& hp = heaps[size_t(i)];
                        const float* qt = q + (t0 + i) * q_stride + h * D;
                        const float* srow = sc.data() + i * n;
                        const float slack = filter_slack(D, scale) * qnorm[size_t(i)];
                        int64_t j = 0;
                        for (; j < n && static_cast<int64_t>(hp.size()) < K; ++j) {
                            offer(hp, K, dot(qt, kr + j * D, D) * scale, row_pos[j0 + j], j0 + j);
                        }
                        // Full heap: a key can only enter at or above the current K-th score
                        // (ties on the score are settled by position inside offer).
                        float thr = hp.empty() ? kNegInf : hp.front().score;
                        for (; j < n; ++j) {
                            // !(a < b) rather than a >= b: NaN scores go to offer, as before.
                            if (!(srow[j] + slack * knorm[size_t(j)] < thr)) {
                                const float s = dot(qt, kr + j * D, D) * scale;
                                if (!(s < thr)) {
                                    offer(hp, K, s, row_pos[j0 + j], j0 + j);
                                    thr = hp.front().score;
                                }
                            }
                        }
                    }
                }
                for (int64_t i = 0; i < nq; ++i) {
                    const int64_t base = (h * T + t0 + i) * K;
                    emit(heaps[size_t(i)], K, scores + base, rows + base, positions + base);
                }
            }
        }
    }
}

}  // namespace

void memory_topk(float* scores, int64_t* rows, int64_t* positions, const float* q, int64_t q_stride,
                 const void* k, DType k_dtype, int64_t k_head_stride, const int64_t* row_pos,
                 int64_t H, int64_t T, int64_t S, int64_t D, int64_t K, float scale) {
    if (T >= kTileMinQueries && K <= kTileMaxK) {
        memory_topk_tiles(scores, rows, positions, q, q_stride, k, k_dtype, k_head_stride, row_pos,
                          H, T, S, D, K, scale);
        return;
    }
    const size_t esz = dtype_size(k_dtype);
#pragma omp parallel if (H * T * S * D > kParallelMinWork)
    {
        std::vector<float> kbuf(static_cast<size_t>(kKeyBlock * D));
        std::vector<Cand> heap;
        heap.reserve(static_cast<size_t>(K) + 1);
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t t = 0; t < T; ++t) {
                heap.clear();
                const float* qt = q + t * q_stride + h * D;
                for (int64_t j0 = 0; j0 < S; j0 += kKeyBlock) {
                    const int64_t n = std::min(kKeyBlock, S - j0);
                    const char* src = static_cast<const char*>(k) +
                                      static_cast<size_t>(h * k_head_stride + j0 * D) * esz;
                    const float* kr;
                    if (k_dtype == DType::kF32) {
                        kr = reinterpret_cast<const float*>(src);
                    } else {
                        convert_to_f32(src, k_dtype, kbuf.data(), static_cast<size_t>(n * D));
                        kr = kbuf.data();
                    }
                    for (int64_t j = 0; j < n; ++j) {
                        offer(heap, K, dot(qt, kr + j * D, D) * scale, row_pos[j0 + j], j0 + j);
                    }
                }
                const int64_t base = (h * T + t) * K;
                emit(heap, K, scores + base, rows + base, positions + base);
            }
        }
    }
}

void topk_threshold(float* thr_score, int64_t* thr_pos, const float* scores,
                    const int64_t* positions, int64_t R, int64_t H, int64_t T, int64_t K) {
#pragma omp parallel if (R * H * T * K > kParallelMinWork)
    {
        std::vector<Cand> all;
#pragma omp for collapse(2) schedule(static)
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t t = 0; t < T; ++t) {
                all.clear();
                for (int64_t r = 0; r < R; ++r) {
                    const int64_t base = ((r * H + h) * T + t) * K;
                    for (int64_t i = 0; i < K; ++i) {
                        if (positions[base + i] >= 0) {
                            all.push_back({scores[base + i], positions[base + i], 0});
                        }
                    }
                }
                const int64_t o = h * T + t;
                if (static_cast<int64_t>(all.size()) < K) {
                    thr_score[o] = kNegInf;
                    thr_pos[o] = std::numeric_limits<int64_t>::max();
                    continue;
                }
                std::nth_element(all.begin(), all.begin() + (K - 1), all.end(),
                                 [](const Cand& a, const Cand& b) {
                                     return better(a.score, a.pos, b.score, b.pos);
                                 });
                thr_score[o] = all[K - 1].score;
                thr_pos[o] = all[K - 1].pos;
            }
        }
    }
}

void attn_accumulate_selected(float* part, const void* v, DType v_dtype, int64_t v_head_stride,
                              const float* scores, const int64_t* rows, const int64_t* positions,
                              const float* thr_score, const int64_t* thr_pos, int64_t H, int64_t T,
                              int64_t D, int64_t K) {
    const size_t esz = dtype_size(v_dtype);
    const int64_t row = D + 2;
#pragma omp parallel if (H * T * K * D > kParallelMinWork)
    {
        std::vector<float> vrow(static_cast<size_t>(D));
#pragma omp for collapse(2) schedule(static)
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t t = 0; t < T; ++t) {
                const int64_t o = h * T + t, base = o * K;
                float* st = part + o * row;
                float m_new = st[D];
                int64_t n = 0;
                for (int64_t i = 0; i < K; ++i) {
                    if (rows[base + i] < 0) continue;
                    if (!passes(scores[base + i], positions[base + i], thr_score[o], thr_pos[o])) {
                        continue;
                    }
                    m_new = std::max(m_new, scores[base + i]);
                    ++n;
                }
                if (n == 0) continue;
                const float m_old = st[D];
                const float corr = (m_old == kNegInf) ? 0.f : std::exp(m_old - m_new);
                for (int64_t d = 0; d < D; ++d) st[d] *= corr;
                float l = st[D + 1] * corr;
                for (int64_t i = 0; i < K; ++i) {
                    if (rows[base + i] < 0) continue;
                    if (!passes(scores[base + i], positions[base + i], thr_score[o], thr_pos[o])) {
                        continue;
                    }
                    const float p = std::exp(scores[base + i] - m_new);
                    l += p;
                    const char* src =
                        static_cast<const char*>(v) +
                        static_cast<size_t>(h * v_head_stride + rows[base + i] * D) * esz;
                    const float* vr;
                    if (v_dtype == DType::kF32) {
                        vr = reinterpret_cast<const float*>(src);
                    } else {
                        convert_to_f32(src, v_dtype, vrow.data(), static_cast<size_t>(D));
                        vr = vrow.data();
                    }
                    for (int64_t d = 0; d < D; ++d) st[d] += p * vr[d];
                }
                st[D] = m_new;
                st[D + 1] = l;
            }
        }
    }
}

}  // namespace fot::kernels::cpu
