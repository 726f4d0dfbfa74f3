// Naive scalar references of the Backend ops (runtime/backend/backend.h), written from the
// contracts in backend.h and kernels/cpu/ops.h, never from a backend's code: the backend
// conformance suite compares CpuBackend with these (CpuBackend is the reference of every other
// backend, so it must not be compared with itself), and the fast-attention checks compare
// every backend with them.
//
// Arithmetic: sums, products, exponentials and the softmax statistics in double, so each
// result is the exactly rounded value of the op up to ~1e-15; where a contract fixes an fp32
// step (rope's angles, the bf16/f16 roundings of the stores and of the `fast` operands) the
// reference takes exactly that step. Stored values are rounded here with code of their own
// (bit arithmetic for bf16, the compiler's _Float16 for f16), not with the library's
// conversions, so the bit-exact checks of scatter_heads test those too.
// Layouts are those of backend.h: activations [T, width] row-major, stores [H, cap, D],
// partials [H, T, D + 2] = (o[0, D), m, l).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/core/dtype.h"

namespace fot::testing::naive {

// What storing `x` in `dtype` (f32, bf16 or f16) keeps: round to nearest, ties to even;
// f16 overflows to infinity and underflows gradually.
uint16_t to_bf16_bits(float x);
uint16_t to_f16_bits(float x);
float stored_value(DType dtype, float x);
std::vector<float> stored_values(DType dtype, const std::vector<float>& x);
// The bytes of `x` in `dtype` (f32, bf16 or f16), little-endian as the stores hold them.
std::vector<unsigned char> stored_bytes(DType dtype, const std::vector<float>& x);

// out[T, C] = x * rsqrt(mean(x^2) + eps) * w per row.
std::vector<float> rmsnorm(const std::vector<float>& x, const std::vector<float>& w, int64_t T,
                           int64_t C, float eps);

// out[T, N] = x[T, K] * w[N, K]^T (the values given; callers round operands first).
std::vector<float> matmul(const std::vector<float>& x, const std::vector<float>& w, int64_t T,
                          int64_t N, int64_t K);

// Rotate-half RoPE of the first H*D columns of each row of x [T, W]: row t at position
// first_pos + t, pair (i, i + D/2) turned by (first_pos + t) * inv_freq[i] with
// inv_freq[i] = 1 / theta^(2i/D), both in fp32 as the contract says (the HF reference builds
// them so; at position 1e5 an angle off by one fp32 ulp turns a pair by ~1e-2); the rotation
// itself in double. Columns beyond H*D are returned unchanged.
std::vector<float> rope(const std::vector<float>& x, int64_t T, int64_t W, int64_t H, int64_t D,
                        int64_t first_pos, float theta);

std::vector<float> silu_mul(const std::vector<float>& gate, const std::vector<float>& up);
// a + b in fp32: one correctly rounded addition, so backends must match it bit for bit.
std::vector<float> add(const std::vector<float>& a, const std::vector<float>& b);

// out[t] = table[ids[t] - row_begin] (table values as stored), zeros outside the shard.
std::vector<float> embedding(const std::vector<int32_t>& ids, const std::vector<float>& table,
                             int64_t rows, int64_t C, int64_t row_begin);

// ---- attention partials ----------------------------------------------------------------------
// A partial in double: [H, T, D + 2] = (o, m, l).
struct Partial {
    int64_t H = 0, T = 0, D = 0;
    std::vector<double> v;
    Partial() = default;
    Partial(int64_t h, int64_t t, int64_t d);  // the empty partial (o = 0, m = -inf, l = 0)
    static Partial from(const std::vector<float>& p, int64_t h, int64_t t, int64_t d);
    double* row(int64_t h, int64_t t) { return &v[static_cast<size_t>((h * T + t) * (D + 2))]; }
    const double* row(int64_t h, int64_t t) const {
        return &v[static_cast<size_t>((h * T + t) * (D + 2))];
    }
    std::vector<float> floats() const;
    std::vector<float> m() const;  // [H * T]
    std::vector<float> l() const;  // [H * T]
    // out [T, H * D] = o / l; zeros where l == 0.
    std::vector<float> finalized() const;
};

// Folds keys [0, S) of k/v (store values, [H, cap, D]) into p for queries q [T, q_stride]:
// query t sees key j iff j <= t + causal_offset (all keys when causal_offset >= S), scores
// (q . k) * scale. fast (Precision::kFast): q, k and v rounded to bf16, and each probability
// p = exp(s - M) rounded to bf16 as the operand of P.V only (l sums the unrounded p), with M
// the max over all keys this call folds for the query: the contract leaves the key blocks of
// an online softmax to the backend, so a backend's output may differ from this by up to one
// bf16 step of each weight (the fast tolerances in backend_conformance.cpp).
void attn_fold(Partial& p, const std::vector<float>& q, int64_t q_stride,
               const std::vector<float>& k, const std::vector<float>& v, int64_t cap, int64_t S,
               float scale, int64_t causal_offset, bool fast);

// Merge of parts [R, H, T, D + 2] (as floats) in order: M = max m_r, L = sum l_r e^(m_r - M),
// O = sum o_r e^(m_r - M).
Partial merge(const std::vector<float>& parts, int64_t R, int64_t H, int64_t T, int64_t D);

// ---- top-k -----------------------------------------------------------------------------------
struct Candidate {
    double score;
    int64_t row, pos;
};
// All S candidates of each (h, t), best first (score desc, position asc), scores
// (q . k) * scale in double: [H * T][S].
std::vector<std::vector<Candidate>> topk_ranked(const std::vector<float>& q, int64_t q_stride,
                                                const std::vector<float>& k, int64_t cap,
                                                const std::vector<int64_t>& row_pos, int64_t H,
                                                int64_t T, int64_t S, int64_t D, float scale);

// The K-th best (score desc, position asc) of the real candidates (position >= 0) of each
// (h, t) over R ranks; (-inf, INT64_MAX) when fewer than K are real. scores/positions
// [R, H, T, K]; outputs [H * T].
void topk_threshold(const std::vector<float>& scores, const std::vector<int64_t>& positions,
                    int64_t R, int64_t H, int64_t T, int64_t K, std::vector<float>* thr_score,
                    std::vector<int64_t>* thr_pos);

// Folds into p the candidates [H, T, K] (rows >= 0) at or before the threshold (score above
// it, or equal with position at or below it), with their stored scores, values v [H, cap, D].
void attn_fold_selected(Partial& p, const std::vector<float>& v, int64_t cap,
                        const std::vector<float>& scores, const std::vector<int64_t>& rows,
                        const std::vector<int64_t>& positions, const std::vector<float>& thr_score,
                        const std::vector<int64_t>& thr_pos, int64_t K);

// parts [T, 3] = (row max, sum exp(x - max), logit of targets[t] when vocab_begin <= target
// < vocab_begin + V, else 0).
std::vector<float> logsoftmax_parts(const std::vector<float>& logits, int64_t T, int64_t V,
                                    const std::vector<int32_t>& targets, int64_t vocab_begin);

}  // namespace fot::testing::naive
