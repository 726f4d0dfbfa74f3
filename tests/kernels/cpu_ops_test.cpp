// CPU kernels against naive double-precision math on small random cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "kernels/cpu/gemv_lowp.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/softmax_passes.h"
#include "runtime/core/dtype.h"
#include "tests/kernels/randn.h"

namespace fot::kernels::cpu {
namespace {

using ::fot::testing::randn;

// The attention tiles' softmax passes (softmax_passes.h): the AVX-512 ones give the AVX2 ones'
// bits (so a result does not depend on which of the two a CI machine has), and both stay within
// a few ulps of the scalar passes. Rows of every length around the 8- and 16-lane blocks, with
// masked (-inf) scores and scores far below the max (exp underflows to exactly 0).
TEST(CpuSoftmaxPasses, Avx512GivesTheAvx2BitsAndBothMatchTheScalarPasses) {
    if (!softmax_isa_available(SoftmaxIsa::kAvx2)) GTEST_SKIP() << "no AVX2/FMA on this CPU";
    const bool avx512 = softmax_isa_available(SoftmaxIsa::kAvx512);
    std::mt19937 rng(77);
    // Narrow scores (many weights of one magnitude: the sum's order shows in its last bits)
    // for even n, wide ones (most weights tiny) for odd n.
    std::uniform_real_distribution<float> narrow(-4.f, 4.f), wide(-30.f, 30.f);
    std::vector<int64_t> lengths;
    for (int64_t n = 0; n <= 40; ++n) lengths.push_back(n);
    for (int64_t n : {63, 64, 65, 127, 128, 129, 255, 256, 257, 300}) lengths.push_back(n);
    auto bits = [](const std::vector<float>& v) {
        std::vector<uint32_t> b(v.size());
        std::memcpy(b.data(), v.data(), v.size() * 4);
        return b;
    };
    for (int64_t n : lengths) {
        SCOPED_TRACE(::testing::Message() << "n " << n);
        std::vector<float> row(n);
        for (int64_t j = 0; j < n; ++j) {
            row[j] = j % 7 == 3    ? -std::numeric_limits<float>::infinity()
                     : j % 11 == 5 ? -2000.f
                                   : (n % 2 == 0 ? narrow(rng) : wide(rng));
        }
        std::vector<float> a2 = row, a5 = row, sc = row;
        const float scale = 0.37f;
        const float m2 = scale_and_max_with(SoftmaxIsa::kAvx2, a2.data(), n, scale);
        const float ms = scale_and_max_with(SoftmaxIsa::kScalar, sc.data(), n, scale);
        ASSERT_EQ(bits(a2), bits(sc)) << "a product is a product";
        ASSERT_EQ(std::memcmp(&m2, &ms, 4), 0);
        const float s2 = exp_and_sum_with(SoftmaxIsa::kAvx2, a2.data(), n, m2);
        const float ss = exp_and_sum_with(SoftmaxIsa::kScalar, sc.data(), n, ms);
        for (int64_t j = 0; j < n; ++j) {
            ASSERT_NEAR(a2[j], sc[j], 4e-7f * std::max(1.f, sc[j])) << j;
            if (row[j] * scale < m2 - 87.f) ASSERT_EQ(a2[j], 0.f) << j;
        }
        EXPECT_NEAR(s2, ss, 1e-6f * std::max(1.f, ss));
        if (n > 0) EXPECT_GE(s2, 1.f) << "the max contributes exp(0)";
        if (!avx512) continue;
        const float m5 = scale_and_max_with(SoftmaxIsa::kAvx512, a5.data(), n, scale);
        ASSERT_EQ(std::memcmp(&m5, &m2, 4), 0);
        const float s5 = exp_and_sum_with(SoftmaxIsa::kAvx512, a5.data(), n, m5);
        ASSERT_EQ(bits(a5), bits(a2));
        ASSERT_EQ(std::memcmp(&s5, &s2, 4), 0) << s5 << " vs " << s2;
    }
    if (!avx512) GTEST_SKIP() << "no AVX-512F on this CPU: AVX2 against scalar only";
}

// The decode GEMV over bf16/f16 weights (gemv_lowp.h): AVX-512 gives the AVX2 bits (a result
// does not depend on which one a machine has), both are within fp32 rounding of double math,
// a token's row does not depend on how many tokens share the call, and matmul takes it for
// T <= 4. Widths around the 16- and 32-element blocks.
TEST(CpuGemvLowp, Avx512GivesTheAvx2BitsAndBothMatchDoubleMath) {
    if (!gemv_lowp_isa_available(GemvIsa::kAvx2)) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
    const bool avx512 = gemv_lowp_isa_available(GemvIsa::kAvx512);
    auto bits = [](const std::vector<float>& v) {
        std::vector<uint32_t> b(v.size());
        std::memcpy(b.data(), v.data(), v.size() * 4);
        return b;
    };
    uint32_t seed = 300;
    for (DType dt : {DType::kBF16, DType::kF16}) {
        for (int64_t K : {1, 8, 15, 16, 17, 31, 32, 33, 48, 100, 1030}) {
            for (int64_t N : {1, 7}) {
                SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " K " << K << " N " << N);
                const int64_t T = kGemvLowpMaxT;
                const std::vector<float> x = randn(T * K, ++seed);
                const std::vector<float> wf = randn(N * K, ++seed, 0.5f);
                std::vector<uint16_t> w(wf.size());
                convert_from_f32(wf.data(), w.data(), dt, wf.size());
                std::vector<float> wide(w.size());
                convert_to_f32(w.data(), dt, wide.data(), w.size());
                std::vector<float> o2(T * N), o5(T * N), om(T * N);
                ASSERT_TRUE(gemv_lowp(o2.data(), x.data(), w.data(), dt, T, N, K, GemvIsa::kAvx2));
                for (int64_t t = 0; t < T; ++t) {
                    for (int64_t n = 0; n < N; ++n) {
                        double ref = 0, mag = 0;
                        for (int64_t k = 0; k < K; ++k) {
                            const double p = static_cast<double>(x[t * K + k]) * wide[n * K + k];
                            ref += p;
                            mag += std::fabs(p);
                        }
                        EXPECT_NEAR(o2[t * N + n], ref, 1e-6 * mag + 1e-30) << t << " " << n;
                    }
                    // The same token alone: the same bits.
                    std::vector<float> one(N);
                    ASSERT_TRUE(gemv_lowp(one.data(), x.data() + t * K, w.data(), dt, 1, N, K,
                                          GemvIsa::kAvx2));
                    EXPECT_EQ(bits(one), bits(std::vector<float>(o2.begin() + t * N,
                                                                 o2.begin() + (t + 1) * N)));
                }
                matmul(om.data(), x.data(), w.data(), dt, T, N, K);
                EXPECT_EQ(bits(om), bits(o2)) << "matmul did not take the GEMV";
                if (!avx512) continue;
                ASSERT_TRUE(
                    gemv_lowp(o5.data(), x.data(), w.data(), dt, T, N, K, GemvIsa::kAvx512));
                EXPECT_EQ(bits(o5), bits(o2));
            }
        }
    }
    EXPECT_FALSE(gemv_lowp(nullptr, nullptr, nullptr, DType::kF32, 1, 1, 1, GemvIsa::kAvx2));
    EXPECT_FALSE(gemv_lowp(nullptr, nullptr, nullptr, DType::kBF16, 5, 1, 1, GemvIsa::kAvx2));
    if (!avx512) GTEST_SKIP() << "no AVX-512F on this CPU: AVX2 against double math only";
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
    std::vector<uint16_t> o(v.size());
    convert_from_f32(v.data(), o.data(), DType::kBF16, v.size());
    return o;
}

// The decode attention's pieces over bf16 rows (gemv_lowp.h): the scores are the GEMV's (T = 1)
// bits, and o += P.V gives, on every instruction set, the bits of one fma per (row, dim) in
// row order. Head dims around the 8- and 16-lane blocks.
TEST(CpuGemvLowp, AttentionPiecesGiveTheSameBitsOnEveryInstructionSet) {
    if (!gemv_lowp_isa_available(GemvIsa::kAvx2)) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
    std::vector<GemvIsa> isas = {GemvIsa::kAvx2};
    if (gemv_lowp_isa_available(GemvIsa::kAvx512)) isas.push_back(GemvIsa::kAvx512);
    uint32_t seed = 400;
    for (int64_t D : {8, 15, 16, 24, 64, 100, 128}) {
        for (int64_t n : {1, 7, 128}) {
            SCOPED_TRACE(::testing::Message() << "D " << D << " n " << n);
            const std::vector<float> q = randn(D, ++seed);
            const std::vector<uint16_t> kv = to_bf16(randn(n * D, ++seed));
            const std::vector<float> p = randn(n, ++seed);
            const std::vector<float> o0 = randn(D, ++seed);
            std::vector<float> want_o = o0;
            for (int64_t d = 0; d < D; ++d) {
                for (int64_t j = 0; j < n; ++j) {
                    want_o[d] = std::fma(p[j], bf16_to_f32(kv[j * D + d]), want_o[d]);
                }
            }
            std::vector<float> want_s(n);
            ASSERT_TRUE(gemv_lowp(want_s.data(), q.data(), kv.data(), DType::kBF16, 1, n, D,
                                  GemvIsa::kAvx2));
            for (GemvIsa isa : isas) {
                std::vector<float> s(n), o = o0;
                dot_rows_bf16(s.data(), q.data(), kv.data(), n, D, isa);
                axpy_rows_bf16(o.data(), p.data(), kv.data(), n, D, isa);
                EXPECT_EQ(0, std::memcmp(s.data(), want_s.data(), 4 * n));
                EXPECT_EQ(0, std::memcmp(o.data(), want_o.data(), 4 * D));
            }
        }
    }
}

TEST(CpuOps, RmsNorm) {
    const int64_t T = 3, C = 37;
    auto x = randn(T * C, 1), w = randn(C, 2);
    std::vector<float> out(T * C);
    rmsnorm(out.data(), x.data(), w.data(), T, C, 1e-6f);
    for (int64_t t = 0; t < T; ++t) {
        double ss = 0;
        for (int64_t c = 0; c < C; ++c) ss += double(x[t * C + c]) * x[t * C + c];
        const double inv = 1.0 / std::sqrt(ss / C + 1e-6);
        for (int64_t c = 0; c < C; ++c) {
            EXPECT_NEAR(out[t * C + c], w[c] * x[t * C + c] * inv, 1e-5);
        }
    }
}

class MatmulTest : public ::testing::TestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(MatmulTest, MatchesNaive) {
    const auto [dtype, T] = GetParam();
    const int64_t N = 300, K = 70;  // N > tile rows exercises tiling
    auto x = randn(T * K, 3), w = randn(N * K, 4);
    std::vector<uint16_t> w16(N * K);
    const void* wp = w.data();
    if (dtype != DType::kF32) {
        convert_from_f32(w.data(), w16.data(), dtype, w.size());
        convert_to_f32(w16.data(), dtype, w.data(), w.size());  // exact values the kernel sees
        wp = w16.data();
    }
    std::vector<float> out(T * N);
    matmul(out.data(), x.data(), wp, dtype, T, N, K);
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t n = 0; n < N; ++n) {
            double acc = 0;
            for (int64_t k = 0; k < K; ++k) acc += double(x[t * K + k]) * w[n * K + k];
            EXPECT_NEAR(out[t * N + n], acc, 1e-4) << "t=" << t << " n=" << n;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, MatmulTest,
    ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                       ::testing::Values(int64_t{1}, int64_t{3}, int64_t{17})));

TEST(CpuOps, RopeRotateHalfAtPositions) {
    const int64_t T = 4, H = 2, D = 8, first = 5;
    const float theta = 10000.f;
    auto x = randn(T * H * D, 5);
    auto y = x;
    rope(y.data(), T, H, D, H * D, first, theta);
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t i = 0; i < D / 2; ++i) {
                const double f = (first + t) / std::pow(double(theta), 2.0 * i / D);
                const double x1 = x[(t * H + h) * D + i], x2 = x[(t * H + h) * D + i + D / 2];
                EXPECT_NEAR(y[(t * H + h) * D + i], x1 * std::cos(f) - x2 * std::sin(f), 1e-5);
                EXPECT_NEAR(y[(t * H + h) * D + i + D / 2], x2 * std::cos(f) + x1 * std::sin(f),
                            1e-5);
            }
        }
    }
    // Position 0 is the identity (memory keys are stored unrotated).
    auto z = x;
    rope(z.data(), 1, H, D, H * D, 0, theta);
    for (int64_t i = 0; i < H * D; ++i) EXPECT_EQ(z[i], x[i]);
}

TEST(CpuOps, SiluMulAndAdd) {
    auto g = randn(10, 6), u = randn(10, 7);
    std::vector<float> o(10), s(10);
    silu_mul(o.data(), g.data(), u.data(), 10);
    add(s.data(), g.data(), u.data(), 10);
    for (int i = 0; i < 10; ++i) {
        EXPECT_NEAR(o[i], g[i] / (1 + std::exp(-double(g[i]))) * u[i], 1e-6);
        EXPECT_EQ(s[i], g[i] + u[i]);
    }
}

// Naive attention of T queries over S keys with a causal offset (double precision).
std::vector<double> naive_attention(const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, int64_t H, int64_t T, int64_t S,
                                    int64_t D, int64_t causal_offset) {
    std::vector<double> out(T * H * D, 0.0);
    const double scale = 1.0 / std::sqrt(double(D));
    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            std::vector<double> s;
            for (int64_t j = 0; j < S; ++j) {
                if (j > t + causal_offset) break;
                double d = 0;
                for (int64_t e = 0; e < D; ++e)
                    d += double(q[(t * H + h) * D + e]) * k[(h * S + j) * D + e];
                s.push_back(d * scale);
            }
            const double m = *std::max_element(s.begin(), s.end());
            double l = 0;
            for (auto& x : s) l += (x = std::exp(x - m));
            for (size_t j = 0; j < s.size(); ++j) {
                for (int64_t e = 0; e < D; ++e) {
                    out[(t * H + h) * D + e] += s[j] / l * v[(h * S + j) * D + e];
                }
            }
        }
    }
    return out;
}

class AttentionTest : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, bool, DType>> {};

TEST_P(AttentionTest, PartialsMatchNaiveSoftmax) {
    const auto [T, S, causal, dtype] = GetParam();
    const int64_t H = 3, D = 16;
    const int64_t offset = causal ? S - T : INT64_MAX / 2;
    auto q = randn(T * H * D, 11), k = randn(H * S * D, 12), v = randn(H * S * D, 13);
    std::vector<uint16_t> k16, v16;
    const void* kp = k.data();
    const void* vp = v.data();
    if (dtype == DType::kBF16) {
        k16 = to_bf16(k);
        v16 = to_bf16(v);
        convert_to_f32(k16.data(), dtype, k.data(), k.size());
        convert_to_f32(v16.data(), dtype, v.data(), v.size());
        kp = k16.data();
        vp = v16.data();
    }
    std::vector<float> part(H * T * (D + 2)), out(T * H * D);
    attn_partial_init(part.data(), H, T, D);
    attn_accumulate(part.data(), q.data(), H * D, kp, vp, dtype, S * D, H, T, S, D,
                    1.f / std::sqrt(float(D)), offset);
    attn_partial_finalize(out.data(), H * D, part.data(), H, T, D);
    auto ref = naive_attention(q, k, v, H, T, S, D, causal ? S - T : S);
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref[i], 2e-5) << i;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(std::make_tuple(int64_t{1}, int64_t{1}, false, DType::kF32),
                      std::make_tuple(int64_t{5}, int64_t{300}, false, DType::kF32),
                      std::make_tuple(int64_t{20}, int64_t{20}, true, DType::kF32),
                      std::make_tuple(int64_t{33}, int64_t{290}, true, DType::kF32),
                      std::make_tuple(int64_t{7}, int64_t{260}, false, DType::kBF16)));

TEST(CpuOps, SplitPartialsMergeToTheWhole) {
    const int64_t H = 2, T = 6, D = 16, S = 200, R = 3;
    auto q = randn(T * H * D, 21), k = randn(H * S * D, 22, 2.f), v = randn(H * S * D, 23);
    const float scale = 0.25f;
    std::vector<float> whole(H * T * (D + 2)), parts(R * H * T * (D + 2));
    attn_partial_init(whole.data(), H, T, D);
    attn_accumulate(whole.data(), q.data(), H * D, k.data(), v.data(), DType::kF32, S * D, H, T, S,
                    D, scale, INT64_MAX / 2);
    // Rank r takes keys [r*S/R, (r+1)*S/R): a sub-store with its own head stride.
    for (int64_t r = 0; r < R; ++r) {
        const int64_t j0 = r * S / R, j1 = (r + 1) * S / R, n = j1 - j0;
        std::vector<float> ks(H * n * D), vs(H * n * D);
        for (int64_t h = 0; h < H; ++h) {
            std::copy_n(k.begin() + (h * S + j0) * D, n * D, ks.begin() + h * n * D);
            std::copy_n(v.begin() + (h * S + j0) * D, n * D, vs.begin() + h * n * D);
        }
        float* p = parts.data() + r * H * T * (D + 2);
        attn_partial_init(p, H, T, D);
        attn_accumulate(p, q.data(), H * D, ks.data(), vs.data(), DType::kF32, n * D, H, T, n, D,
                        scale, INT64_MAX / 2);
    }
    std::vector<float> merged(H * T * (D + 2));
    attn_partial_merge(merged.data(), parts.data(), R, H, T, D);
    std::vector<float> a(T * H * D), b(T * H * D);
    attn_partial_finalize(a.data(), H * D, whole.data(), H, T, D);
    attn_partial_finalize(b.data(), H * D, merged.data(), H, T, D);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6);
    // An empty partial merges as nothing.
    std::vector<float> with_empty(2 * H * T * (D + 2));
    std::copy(whole.begin(), whole.end(), with_empty.begin());
    attn_partial_init(with_empty.data() + H * T * (D + 2), H, T, D);
    std::vector<float> m2(H * T * (D + 2));
    attn_partial_merge(m2.data(), with_empty.data(), 2, H, T, D);
    EXPECT_EQ(m2, whole);
}

// Brute-force top-K set under (score desc, position asc).
std::set<int64_t> brute_topk(const std::vector<std::pair<float, int64_t>>& c, int64_t K) {
    auto s = c;
    std::sort(s.begin(), s.end(), [](auto& a, auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::set<int64_t> out;
    for (int64_t i = 0; i < K && i < int64_t(s.size()); ++i) out.insert(s[i].second);
    return out;
}

TEST(CpuOps, TopkSelectsTheBruteForceSetWithTies) {
    const int64_t H = 2, T = 3, D = 4, S = 500, K = 17;
    // Keys drawn from a small set of vectors: many exactly equal scores (ties).
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> pick(0, 9);
    auto base = randn(10 * D, 31);
    std::vector<float> k(H * S * D);
    for (int64_t r = 0; r < H * S; ++r) {
        const int b = pick(rng);
        std::copy_n(base.begin() + b * D, D, k.begin() + r * D);
    }
    auto q = randn(T * H * D, 32);
    std::vector<int64_t> row_pos(S);
    for (int64_t j = 0; j < S; ++j) row_pos[j] = 1000 + 3 * j;  // increasing, not contiguous
    std::vector<float> scores(H * T * K);
    std::vector<int64_t> rows(H * T * K), pos(H * T * K);
    memory_topk(scores.data(), rows.data(), pos.data(), q.data(), H * D, k.data(), DType::kF32,
                S * D, row_pos.data(), H, T, S, D, K, 0.5f);
    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            std::vector<std::pair<float, int64_t>> c;
            for (int64_t j = 0; j < S; ++j) {
                float d = 0;
                for (int64_t e = 0; e < D; ++e)
                    d += q[(t * H + h) * D + e] * k[(h * S + j) * D + e];
                c.push_back({d * 0.5f, row_pos[j]});
            }
            const int64_t base_i = (h * T + t) * K;
            std::set<int64_t> got(pos.begin() + base_i, pos.begin() + base_i + K);
            EXPECT_EQ(got, brute_topk(c, K));
            for (int64_t i = 0; i + 1 < K; ++i) {  // sorted best first
                EXPECT_TRUE(scores[base_i + i] > scores[base_i + i + 1] ||
                            (scores[base_i + i] == scores[base_i + i + 1] &&
                             pos[base_i + i] < pos[base_i + i + 1]));
            }
            for (int64_t i = 0; i < K; ++i) EXPECT_EQ(row_pos[rows[base_i + i]], pos[base_i + i]);
        }
    }
}

TEST(CpuOps, TopkTilesGiveThePerQueryResultBitForBit) {
    // Prefill windows (>= 8 queries) filter with a GEMM tile; the scores they return must still be
    // the per-query path's (one query at a time), so that equal keys tie exactly wherever they
    // sit in a tile. Keys from a small set (many exact ties), S not a multiple of the key block.
    const int64_t H = 2, T = 70, D = 24, S = 700, K = 40;
    std::mt19937 rng(8);
    std::uniform_int_distribution<int> pick(0, 30);
    const auto base = randn(31 * D, 81);
    std::vector<float> k(H * S * D);
    for (int64_t r = 0; r < H * S; ++r) {
        const int b = pick(rng);
        std::copy_n(base.begin() + b * D, D, k.begin() + r * D);
    }
    const auto q = randn(T * H * D, 82);
    std::vector<int64_t> row_pos(S);
    for (int64_t j = 0; j < S; ++j) row_pos[j] = 5000 - 7 * j;  // decreasing
    std::vector<float> scores(H * T * K), one_s(H * K);
    std::vector<int64_t> rows(H * T * K), pos(H * T * K), one_r(H * K), one_p(H * K);
    memory_topk(scores.data(), rows.data(), pos.data(), q.data(), H * D, k.data(), DType::kF32,
                S * D, row_pos.data(), H, T, S, D, K, 0.3f);
    for (int64_t t = 0; t < T; ++t) {
        memory_topk(one_s.data(), one_r.data(), one_p.data(), q.data() + t * H * D, H * D, k.data(),
                    DType::kF32, S * D, row_pos.data(), H, 1, S, D, K, 0.3f);
        for (int64_t h = 0; h < H; ++h) {
            for (int64_t i = 0; i < K; ++i) {
                const int64_t a = (h * T + t) * K + i, b = h * K + i;
                ASSERT_EQ(rows[a], one_r[b]) << "h " << h << " t " << t << " slot " << i;
                ASSERT_EQ(std::memcmp(&scores[a], &one_s[b], sizeof(float)), 0)
                    << "h " << h << " t " << t << " slot " << i;
            }
        }
    }
}

TEST(CpuOps, TopkWithKAtLeastSEqualsDense) {
    const int64_t H = 2, T = 4, D = 16, S = 90, K = 128;
    auto q = randn(T * H * D, 41), k = randn(H * S * D, 42), v = randn(H * S * D, 43);
    std::vector<int64_t> row_pos(S);
    for (int64_t j = 0; j < S; ++j) row_pos[j] = j;
    const float scale = 0.25f;
    std::vector<float> scores(H * T * K), thr_s(H * T);
    std::vector<int64_t> rows(H * T * K), pos(H * T * K), thr_p(H * T);
    memory_topk(scores.data(), rows.data(), pos.data(), q.data(), H * D, k.data(), DType::kF32,
                S * D, row_pos.data(), H, T, S, D, K, scale);
    for (int64_t i = 0; i < H * T; ++i) {  // padding beyond S
        EXPECT_EQ(rows[i * K + S], -1);
        EXPECT_EQ(scores[i * K + S], -std::numeric_limits<float>::infinity());
    }
    topk_threshold(thr_s.data(), thr_p.data(), scores.data(), pos.data(), 1, H, T, K);
    std::vector<float> p1(H * T * (D + 2)), p2(H * T * (D + 2)), o1(T * H * D), o2(T * H * D);
    attn_partial_init(p1.data(), H, T, D);
    attn_partial_init(p2.data(), H, T, D);
    attn_accumulate_selected(p1.data(), v.data(), DType::kF32, S * D, scores.data(), rows.data(),
                             pos.data(), thr_s.data(), thr_p.data(), H, T, D, K);
    attn_accumulate(p2.data(), q.data(), H * D, k.data(), v.data(), DType::kF32, S * D, H, T, S, D,
                    scale, INT64_MAX / 2);
    attn_partial_finalize(o1.data(), H * D, p1.data(), H, T, D);
    attn_partial_finalize(o2.data(), H * D, p2.data(), H, T, D);
    for (size_t i = 0; i < o1.size(); ++i) EXPECT_NEAR(o1[i], o2[i], 1e-5);
}

TEST(CpuOps, TopkThresholdAcrossRanksKeepsExactlyK) {
    const int64_t R = 3, H = 1, T = 2, K = 5;
    // Each rank's candidates, best first; equal scores across ranks resolve by position.
    std::vector<float> sc = {9, 7, 7, 3, 1, 6, 5, 4, 2, 0,   // rank 0
                             8, 7, 2, 1, 0, 6, 5, 5, 5, 5,   // rank 1
                             7, 7, 7, 7, 7, 9, 9, 1, 0, 0};  // rank 2
    std::vector<int64_t> po = {0, 3, 6, 9,  12, 0, 3, 6, 9,  12, 1, 4, 7, 10, 13,
                               1, 4, 7, 10, 13, 2, 5, 8, 11, 14, 2, 5, 8, 11, 14};
    std::vector<float> thr_s(H * T);
    std::vector<int64_t> thr_p(H * T);
    topk_threshold(thr_s.data(), thr_p.data(), sc.data(), po.data(), R, H, T, K);
    // t = 0: 9(0) 8(1) 7(2) 7(3) 7(4) -> 5th is (7, 4).
    EXPECT_EQ(thr_s[0], 7.f);
    EXPECT_EQ(thr_p[0], 4);
    // t = 1: 9(2) 9(5) 6(0) 6(1) 5(3) -> (5, 3).
    EXPECT_EQ(thr_s[1], 5.f);
    EXPECT_EQ(thr_p[1], 3);
}

TEST(CpuOps, LogSoftmaxPartsGiveTheFullLogSoftmaxWhenCombined) {
    // Two vocabulary slices of one row combine to the full-row log-softmax of the target.
    const int64_t V = 300, half = V / 2;
    auto x = randn(V, 51, 3.f);
    const int32_t target = 217;
    std::vector<float> p0(3), p1(3);
    std::vector<float> a(x.begin(), x.begin() + half), b(x.begin() + half, x.end());
    logsoftmax_parts(p0.data(), a.data(), 1, half, &target, 0);
    logsoftmax_parts(p1.data(), b.data(), 1, half, &target, half);
    EXPECT_EQ(p0[2], 0.f);
    EXPECT_EQ(p1[2], x[target]);
    const double M = std::max(p0[0], p1[0]);
    const double L = p0[1] * std::exp(p0[0] - M) + p1[1] * std::exp(p1[0] - M);
    const double logp = p0[2] + p1[2] - (M + std::log(L));
    double m = -1e30, s = 0;
    for (float v : x) m = std::max(m, double(v));
    for (float v : x) s += std::exp(v - m);
    EXPECT_NEAR(logp, x[target] - (m + std::log(s)), 1e-5);
}

}  // namespace
}  // namespace fot::kernels::cpu
