#include "tests/kernels/backend_reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace fot::testing::naive {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

uint32_t bits_of(float x) {
    uint32_t b;
    std::memcpy(&b, &x, 4);
    return b;
}

float float_of(uint32_t b) {
    float x;
    std::memcpy(&x, &b, 4);
    return x;
}

double bf16d(float x) {
    return float_of(static_cast<uint32_t>(to_bf16_bits(x)) << 16);
}

}  // namespace

uint16_t to_bf16_bits(float x) {
    // Keep the high 16 bits; round up when the dropped half is above 0x8000, or equal to it
    // with an odd kept part (ties to even). A carry out of the mantissa bumps the exponent,
    // which is the correct rounding (up to infinity past the largest bf16). No NaNs here.
    const uint32_t b = bits_of(x);
    uint32_t kept = b & 0xffff0000u;
    const uint32_t dropped = b & 0xffffu;
    if (dropped > 0x8000u || (dropped == 0x8000u && (kept & 0x10000u))) kept += 0x10000u;
    return static_cast<uint16_t>(kept >> 16);
}

uint16_t to_f16_bits(float x) {
    const _Float16 h = static_cast<_Float16>(x);  // IEEE conversion: nearest even
    uint16_t out;
    std::memcpy(&out, &h, 2);
    return out;
}

float stored_value(DType dtype, float x) {
    switch (dtype) {
        case DType::kF32:
            return x;
        case DType::kBF16:
            return static_cast<float>(bf16d(x));
        case DType::kF16: {
            const uint16_t b = to_f16_bits(x);
            _Float16 h;
            std::memcpy(&h, &b, 2);
            return static_cast<float>(h);
        }
        default:
            return std::numeric_limits<float>::quiet_NaN();
    }
}

std::vector<float> stored_values(DType dtype, const std::vector<float>& x) {
    std::vector<float> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = stored_value(dtype, x[i]);
    return out;
}

std::vector<unsigned char> stored_bytes(DType dtype, const std::vector<float>& x) {
    const size_t es = dtype == DType::kF32 ? 4 : 2;
    std::vector<unsigned char> out(x.size() * es);
    for (size_t i = 0; i < x.size(); ++i) {
        if (dtype == DType::kF32) {
            std::memcpy(&out[i * 4], &x[i], 4);
        } else {
            const uint16_t b = dtype == DType::kBF16 ? to_bf16_bits(x[i]) : to_f16_bits(x[i]);
            std::memcpy(&out[i * 2], &b, 2);
        }
    }
    return out;
}

std::vector<float> rmsnorm(const std::vector<float>& x, const std::vector<float>& w, int64_t T,
                           int64_t C, float eps) {
    std::vector<float> out(static_cast<size_t>(T * C));
    for (int64_t t = 0; t < T; ++t) {
        double ss = 0;
        for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(x[t * C + c]) * x[t * C + c];
        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(C) + eps);
        for (int64_t c = 0; c < C; ++c) {
            out[t * C + c] = static_cast<float>(static_cast<double>(x[t * C + c]) * inv * w[c]);
        }
    }
    return out;
}

std::vector<float> matmul(const std::vector<float>& x, const std::vector<float>& w, int64_t T,
                          int64_t N, int64_t K) {
    std::vector<float> out(static_cast<size_t>(T * N));
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t n = 0; n < N; ++n) {
            double acc = 0;
            for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(x[t * K + k]) * w[n * K + k];
            out[t * N + n] = static_cast<float>(acc);
        }
    }
    return out;
}

std::vector<float> rope(const std::vector<float>& x, int64_t T, int64_t W, int64_t H, int64_t D,
                        int64_t first_pos, float theta) {
    std::vector<float> out = x;
    const int64_t half = D / 2;
    for (int64_t t = 0; t < T; ++t) {
        const float pos = static_cast<float>(first_pos + t);
        for (int64_t i = 0; i < half; ++i) {
            const float inv_freq =
                1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(D));
            const double angle = static_cast<double>(pos * inv_freq);  // the fp32 product
            const double c = std::cos(angle), s = std::sin(angle);
            for (int64_t h = 0; h < H; ++h) {
                const double x1 = x[t * W + h * D + i], x2 = x[t * W + h * D + i + half];
                out[t * W + h * D + i] = static_cast<float>(x1 * c - x2 * s);
                out[t * W + h * D + i + half] = static_cast<float>(x2 * c + x1 * s);
            }
        }
    }
    return out;
}

std::vector<float> silu_mul(const std::vector<float>& gate, const std::vector<float>& up) {
    std::vector<float> out(gate.size());
    for (size_t i = 0; i < gate.size(); ++i) {
        const double g = gate[i];
        out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
    }
    return out;
}

std::vector<float> add(const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<float> out(a.size());
    for (size_t i = 0; i < a.size(); ++i) out[i] = a[i] + b[i];
    return out;
}

std::vector<float> embedding(const std::vector<int32_t>& ids, const std::vector<float>& table,
                             int64_t rows, int64_t C, int64_t row_begin) {
    const int64_t T = static_cast<int64_t>(ids.size());
    std::vector<float> out(static_cast<size_t>(T * C), 0.f);
    for (int64_t t = 0; t < T; ++t) {
        const int64_t r = ids[t] - row_begin;
        if (r < 0 || r >= rows) continue;
        std::copy_n(table.begin() + r * C, C, out.begin() + t * C);
    }
    return out;
}

// ---- attention ---------------------------------------------------------------------------------

Partial::Partial(int64_t h, int64_t t, int64_t d)
    : H(h), T(t), D(d), v(static_cast<size_t>(h * t * (d + 2)), 0.0) {
    for (int64_t r = 0; r < H * T; ++r) v[r * (D + 2) + D] = kNegInf;
}

Partial Partial::from(const std::vector<float>& p, int64_t h, int64_t t, int64_t d) {
    Partial out(h, t, d);
    std::copy(p.begin(), p.begin() + static_cast<int64_t>(out.v.size()), out.v.begin());
    return out;
}

std::vector<float> Partial::floats() const {
    return std::vector<float>(v.begin(), v.end());
}

std::vector<float> Partial::m() const {
    std::vector<float> out;
    for (int64_t r = 0; r < H * T; ++r) out.push_back(static_cast<float>(v[r * (D + 2) + D]));
    return out;
}

std::vector<float> Partial::l() const {
    std::vector<float> out;
    for (int64_t r = 0; r < H * T; ++r) out.push_back(static_cast<float>(v[r * (D + 2) + D + 1]));
    return out;
}

std::vector<float> Partial::finalized() const {
    std::vector<float> out(static_cast<size_t>(T * H * D), 0.f);
    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            const double* st = row(h, t);
            if (st[D + 1] == 0) continue;
            for (int64_t d = 0; d < D; ++d) {
                out[t * H * D + h * D + d] = static_cast<float>(st[d] / st[D + 1]);
            }
        }
    }
    return out;
}

namespace {

// Folds scored keys (s_j, value row j) into one (o, m, l) row with a single rescale: M is
// the max of the old m and every new score. round_p: the operand of P.V is round_bf16(p).
void fold_row(double* st, int64_t D, const std::vector<double>& s,
              const std::vector<const float*>& vals, bool round_p) {
    if (s.empty()) return;
    double M = st[D];
    for (double x : s) M = std::max(M, x);
    const double corr = st[D] == kNegInf ? 0.0 : std::exp(st[D] - M);
    double l = st[D + 1] * corr;
    std::vector<double> o(static_cast<size_t>(D));
    for (int64_t d = 0; d < D; ++d) o[d] = st[d] * corr;
    for (size_t j = 0; j < s.size(); ++j) {
        const double p = std::exp(s[j] - M);
        l += p;
        const double pw = round_p ? bf16d(static_cast<float>(p)) : p;
        for (int64_t d = 0; d < D; ++d) o[d] += pw * vals[j][d];
    }
    for (int64_t d = 0; d < D; ++d) st[d] = o[d];
    st[D] = M;
    st[D + 1] = l;
}

}  // namespace

void attn_fold(Partial& p, const std::vector<float>& q, int64_t q_stride,
               const std::vector<float>& k, const std::vector<float>& v, int64_t cap, int64_t S,
               float scale, int64_t causal_offset, bool fast) {
    const int64_t H = p.H, T = p.T, D = p.D;
    // The operands as the products see them (bf16 in fast), converted once.
    auto operands = [fast](const std::vector<float>& x) {
        std::vector<double> out(x.size());
        for (size_t i = 0; i < x.size(); ++i) out[i] = fast ? bf16d(x[i]) : x[i];
        return out;
    };
    const std::vector<double> qd = operands(q), kd = operands(k);
    const std::vector<float> vr = fast ? stored_values(DType::kBF16, v) : v;
    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            int64_t end = S;
            if (causal_offset < S) end = std::clamp<int64_t>(t + causal_offset + 1, 0, S);
            std::vector<double> s;
            std::vector<const float*> vals;
            const double* qt = &qd[t * q_stride + h * D];
            for (int64_t j = 0; j < end; ++j) {
                const double* kj = &kd[(h * cap + j) * D];
                double dot = 0;
                for (int64_t d = 0; d < D; ++d) dot += qt[d] * kj[d];
                s.push_back(dot * scale);
                vals.push_back(&vr[(h * cap + j) * D]);
            }
            fold_row(p.row(h, t), D, s, vals, fast);
        }
    }
}

Partial merge(const std::vector<float>& parts, int64_t R, int64_t H, int64_t T, int64_t D) {
    Partial out(H, T, D);
    const int64_t n = H * T * (D + 2);
    for (int64_t i = 0; i < H * T; ++i) {
        double M = kNegInf;
        for (int64_t r = 0; r < R; ++r) M = std::max<double>(M, parts[r * n + i * (D + 2) + D]);
        if (M == kNegInf) continue;  // every part empty: the empty partial
        double* st = &out.v[i * (D + 2)];
        st[D] = M;
        for (int64_t r = 0; r < R; ++r) {
            const float* pr = &parts[r * n + i * (D + 2)];
            if (static_cast<double>(pr[D]) == kNegInf) continue;
            const double c = std::exp(static_cast<double>(pr[D]) - M);
            for (int64_t d = 0; d < D; ++d) st[d] += pr[d] * c;
            st[D + 1] += pr[D + 1] * c;
        }
    }
    return out;
}

// ---- top-k -------------------------------------------------------------------------------------

namespace {

bool better(double sa, int64_t pa, double sb, int64_t pb) {
    return sa != sb ? sa > sb : pa < pb;
}

}  // namespace

std::vector<std::vector<Candidate>> topk_ranked(const std::vector<float>& q, int64_t q_stride,
                                                const std::vector<float>& k, int64_t cap,
                                                const std::vector<int64_t>& row_pos, int64_t H,
                                                int64_t T, int64_t S, int64_t D, float scale) {
    std::vector<std::vector<Candidate>> out(static_cast<size_t>(H * T));
    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            auto& c = out[h * T + t];
            for (int64_t j = 0; j < S; ++j) {
                double dot = 0;
                for (int64_t d = 0; d < D; ++d) {
                    dot +=
                        static_cast<double>(q[t * q_stride + h * D + d]) * k[(h * cap + j) * D + d];
                }
                c.push_back({dot * scale, j, row_pos[j]});
            }
            std::sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) {
                return better(a.score, a.pos, b.score, b.pos);
            });
        }
    }
    return out;
}

void topk_threshold(const std::vector<float>& scores, const std::vector<int64_t>& positions,
                    int64_t R, int64_t H, int64_t T, int64_t K, std::vector<float>* thr_score,
                    std::vector<int64_t>* thr_pos) {
    thr_score->assign(static_cast<size_t>(H * T), -std::numeric_limits<float>::infinity());
    thr_pos->assign(static_cast<size_t>(H * T), INT64_MAX);
    for (int64_t i = 0; i < H * T; ++i) {
        std::vector<std::pair<float, int64_t>> c;
        for (int64_t r = 0; r < R; ++r) {
            for (int64_t j = 0; j < K; ++j) {
                const int64_t at = (r * H * T + i) * K + j;
                if (positions[at] >= 0) c.push_back({scores[at], positions[at]});
            }
        }
        if (static_cast<int64_t>(c.size()) < K) continue;
        std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
            return better(a.first, a.second, b.first, b.second);
        });
        (*thr_score)[i] = c[K - 1].first;
        (*thr_pos)[i] = c[K - 1].second;
    }
}

void attn_fold_selected(Partial& p, const std::vector<float>& v, int64_t cap,
                        const std::vector<float>& scores, const std::vector<int64_t>& rows,
                        const std::vector<int64_t>& positions, const std::vector<float>& thr_score,
                        const std::vector<int64_t>& thr_pos, int64_t K) {
    for (int64_t h = 0; h < p.H; ++h) {
        for (int64_t t = 0; t < p.T; ++t) {
            const int64_t i = h * p.T + t;
            std::vector<double> s;
            std::vector<const float*> vals;
            for (int64_t j = 0; j < K; ++j) {
                const int64_t at = i * K + j;
                if (rows[at] < 0) continue;
                const bool passes = scores[at] > thr_score[i] ||
                                    (scores[at] == thr_score[i] && positions[at] <= thr_pos[i]);
                if (!passes) continue;
                s.push_back(scores[at]);
                vals.push_back(&v[(h * cap + rows[at]) * p.D]);
            }
            fold_row(p.row(h, t), p.D, s, vals, false);
        }
    }
}

std::vector<float> logsoftmax_parts(const std::vector<float>& logits, int64_t T, int64_t V,
                                    const std::vector<int32_t>& targets, int64_t vocab_begin) {
    std::vector<float> out(static_cast<size_t>(3 * T));
    for (int64_t t = 0; t < T; ++t) {
        const float* row = &logits[t * V];
        const float m = *std::max_element(row, row + V);
        double s = 0;
        for (int64_t j = 0; j < V; ++j) s += std::exp(static_cast<double>(row[j]) - m);
        const int64_t col = static_cast<int64_t>(targets[t]) - vocab_begin;
        out[3 * t] = m;
        out[3 * t + 1] = static_cast<float>(s);
        out[3 * t + 2] = targets[t] >= 0 && col >= 0 && col < V ? row[col] : 0.f;
    }
    return out;
}

}  // namespace fot::testing::naive
