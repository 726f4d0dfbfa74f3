// CpuBackend in Precision::kFast (runtime/core/precision.h) against naive double-precision
// math that applies the same rounding rules: bf16 q, k, v; fp32/f64 softmax statistics; the
// probabilities rounded to bf16 only as the operand of P.V. And matmul: fast equals the f32
// GEMM on x rounded to bf16 (f16 for f16 weights), bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/cpu/ops.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/core/dtype.h"
#include "tests/kernels/randn.h"

namespace fot {
namespace {

using ::fot::testing::randn;

// A [rows, cols] f32 buffer holding `host`.
Buffer f32_buffer(const std::vector<float>& host, Shape shape) {
    Buffer b(DType::kF32, std::move(shape));
    std::memcpy(b.data(), host.data(), host.size() * sizeof(float));
    return b;
}

// A store of `dtype` holding `host` (f32 values, converted with round-to-nearest-even).
Buffer store_buffer(const std::vector<float>& host, DType dtype, Shape shape) {
    Buffer b(dtype, std::move(shape));
    convert_from_f32(host.data(), b.data(), dtype, host.size());
    return b;
}

// Naive attention in double over the visible keys, finalised (o / l), as an online softmax
// over key blocks of `block` keys (starting at key 0): p = exp(s - m_new) with m_new the
// running max after the block, which is what round_p rounds (to bf16, in the P.V sum only;
// l sums the unrounded p). round_qkv: q, k, v as bf16. The block size is part of the rule
// (a p is rounded against the running max of its block), so the test follows the kernel's
// key blocks (kernels/cpu/attention.cpp).
//
// A p within fp32 noise of a bf16 rounding midpoint (kTieBand, relative) may round either way
// in an fp32 kernel, depending on the order of its sums (which differs between AVX2 and
// AVX-512 builds): `tol` holds, per output element, what flipping every such p could change,
// plus the bound on any fp32 order of the P.V sum (n u sum |p v| over the n visible keys: AMX
// tiles add in an order of their own), so a test can demand agreement element by element up
// to that.
struct Naive {
    std::vector<double> out;   // [T, H, D]
    std::vector<double> tol;   // [T, H, D]
    std::vector<double> m, l;  // [H, T]
};

// fp32 scores and exponentials put p within ~1e-6 (relative) of its double value.
constexpr double kTieBand = 1e-5;

// One bf16 step at p (> 0) when p lies within kTieBand of a bf16 rounding midpoint, else 0.
double tie_step(double p) {
    if (!(p > 0)) return 0;
    int e = 0;
    std::frexp(p, &e);                           // p in [2^(e-1), 2^e)
    const double step = std::ldexp(1.0, e - 8);  // bf16: 8 significant bits
    const double mid = (std::floor(p / step) + 0.5) * step;
    return std::abs(p - mid) <= kTieBand * p ? step : 0;
}

Naive naive_attention(const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, int64_t H, int64_t T, int64_t S, int64_t cap,
                      int64_t D, float scale, int64_t causal_offset, bool round_qkv, bool round_p,
                      int64_t block) {
    auto r = [&](float x) { return round_qkv ? static_cast<double>(round_bf16(x)) : double(x); };
    Naive n;
    n.out.assign(static_cast<size_t>(T * H * D), 0.0);
    n.tol.assign(static_cast<size_t>(T * H * D), 0.0);
    n.m.assign(static_cast<size_t>(H * T), -std::numeric_limits<double>::infinity());
    n.l.assign(static_cast<size_t>(H * T), 0.0);
    std::vector<double> s(static_cast<size_t>(S));
    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            int64_t jend = S;
            if (causal_offset < S) jend = std::clamp<int64_t>(t + causal_offset + 1, 0, S);
            if (jend == 0) continue;
            double m = -std::numeric_limits<double>::infinity();
            for (int64_t j = 0; j < jend; ++j) {
                double acc = 0;
                for (int64_t d = 0; d < D; ++d) {
                    acc += r(q[t * H * D + h * D + d]) * r(k[(h * cap + j) * D + d]);
                }
                s[j] = acc * scale;
                m = std::max(m, s[j]);
            }
            double l = 0, run_m = -std::numeric_limits<double>::infinity();
            std::vector<double> o(static_cast<size_t>(D), 0.0), tie(o), mag(o);
            for (int64_t j0 = 0; j0 < jend; j0 += block) {
                const int64_t j1 = std::min(jend, j0 + block);
                double m_new = run_m;
                for (int64_t j = j0; j < j1; ++j) m_new = std::max(m_new, s[j]);
                const double corr = std::isinf(run_m) ? 0.0 : std::exp(run_m - m_new);
                for (auto& x : o) x *= corr;
                for (auto& x : tie) x *= corr;
                for (auto& x : mag) x *= corr;
                l *= corr;
                for (int64_t j = j0; j < j1; ++j) {
                    const double p = std::exp(s[j] - m_new);
                    l += p;
                    const double pv = round_p ? round_bf16(static_cast<float>(p)) : p;
                    const double flip = round_p ? tie_step(p) : 0.0;
                    for (int64_t d = 0; d < D; ++d) {
                        const double vd = r(v[(h * cap + j) * D + d]);
                        o[d] += pv * vd;
                        tie[d] += flip * std::abs(vd);
                        mag[d] += pv * std::abs(vd);
                    }
                }
                run_m = m_new;
            }
            for (int64_t d = 0; d < D; ++d) {
                n.out[(t * H + h) * D + d] = o[d] / l;
                n.tol[(t * H + h) * D + d] = (tie[d] + double(jend) * 0x1p-24 * mag[d]) / l;
            }
            n.m[h * T + t] = m;
            n.l[h * T + t] = l;
        }
    }
    return n;
}

double mean_abs(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
    return s / static_cast<double>(a.size());
}

// (head_dim, queries, causal, store dtype)
class FastAttention : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, bool, DType>> {};

TEST_P(FastAttention, MatchesNaiveWithTheSameRoundings) {
    const auto [D, T, causal, store] = GetParam();
    const int64_t H = 2;
    CpuBackend be(2);
    for (int64_t S : {int64_t{37}, int64_t{131}, int64_t{300}}) {  // not multiples of tiles
        if (causal && S < T) continue;
        SCOPED_TRACE("S=" + std::to_string(S));
        const int64_t cap = S + 3;  // head stride larger than S
        const uint32_t seed = static_cast<uint32_t>(D * 1000 + T * 10 + S);
        auto q = randn(static_cast<size_t>(T * H * D), seed, 1.0f);
        auto k = randn(static_cast<size_t>(H * cap * D), seed + 1, 1.0f);
        auto v = randn(static_cast<size_t>(H * cap * D), seed + 2, 1.0f);
        // The values a bf16 store holds are what every path sees.
        if (store == DType::kBF16) {
            for (auto* x : {&k, &v}) {
                for (auto& e : *x) e = round_bf16(e);
            }
        }
        const float scale = 1.0f / std::sqrt(static_cast<float>(D));
        const int64_t off = causal ? S - T : std::numeric_limits<int64_t>::max() / 2;
        Buffer qb = f32_buffer(q, {T, H * D});
        Buffer kb = store_buffer(k, store, {H, cap, D});
        Buffer vb = store_buffer(v, store, {H, cap, D});

        auto run = [&](Precision p) {
            be.set_precision(p);
            Buffer part(DType::kF32, {H, T, D + 2});
            be.attn_partial_init(part.view());
            be.attn_accumulate(part.view(), qb.view(), kb.view(), vb.view(), S, scale, off);
            Buffer out(DType::kF32, {T, H * D});
            be.attn_partial_finalize(out.view(), part.view());
            std::vector<float> pv(part.as<float>(), part.as<float>() + part.numel());
            std::vector<double> ov(out.as<float>(), out.as<float>() + out.numel());
            return std::make_pair(pv, ov);
        };
        const auto [part_fast, out_fast] = run(Precision::kFast);
        const auto [part_exact, out_exact] = run(Precision::kExact);
        be.set_precision(Precision::kExact);

        // The kernel's key blocks: 256 keys in the BLAS tile path (T >= 8), 128 below.
        const int64_t block = T >= 8 ? 256 : 128;
        const Naive ref = naive_attention(q, k, v, H, T, S, cap, D, scale, off, true, true, block);
        const Naive no_p =
            naive_attention(q, k, v, H, T, S, cap, D, scale, off, true, false, block);
        const Naive plain =
            naive_attention(q, k, v, H, T, S, cap, D, scale, off, false, false, block);

        // Statistics: m exactly the fp32 running max, l the fp32 sum of exp (not rounded).
        for (int64_t i = 0; i < H * T; ++i) {
            const float* st = part_fast.data() + i * (D + 2);
            EXPECT_NEAR(st[D], ref.m[i], 1e-5 * (1 + std::abs(ref.m[i]))) << "row " << i;
            EXPECT_NEAR(st[D + 1], ref.l[i], 2e-5 * ref.l[i]) << "row " << i;
        }
        // Output, element by element: the fp32 noise of the scores and of l (kNoise) plus
        // ref.tol. The rules without rounding p must be outside that somewhere, or the check
        // could not tell them apart.
        constexpr double kNoise = 2e-6;
        double worst = -1, maxd = 0, no_p_excess = 0;
        for (size_t i = 0; i < out_fast.size(); ++i) {
            const double d = std::abs(out_fast[i] - ref.out[i]);
            maxd = std::max(maxd, d);
            worst = std::max(worst, d - ref.tol[i]);
            no_p_excess = std::max(no_p_excess, std::abs(no_p.out[i] - ref.out[i]) - ref.tol[i]);
        }
        const double err = mean_abs(out_fast, ref.out);
        const double d_p = mean_abs(ref.out, no_p.out);     // effect of rounding p
        const double d_all = mean_abs(ref.out, plain.out);  // effect of all roundings
        const double exact_err = mean_abs(out_exact, plain.out);
        std::cout << "D=" << D << " T=" << T << " causal=" << causal << " " << dtype_name(store)
                  << " S=" << S << ": fast vs naive-fast max " << maxd << " mean " << err
                  << " (beyond the tie tolerance " << worst << "); effect of rounding p " << d_p
                  << ", of all " << d_all << "; exact vs naive-fp64 mean " << exact_err << "\n";
        EXPECT_LT(worst, kNoise);
        EXPECT_GT(no_p_excess, 10 * kNoise);
        // Exact mode is untouched: it follows the unrounded rules.
        EXPECT_LT(exact_err, 0.01 * d_all + 1e-6);
    }
}

INSTANTIATE_TEST_SUITE_P(CpuFast, FastAttention,
                         ::testing::Combine(::testing::Values(16, 64, 100, 128),
                                            ::testing::Values(1, 3, 64), ::testing::Bool(),
                                            ::testing::Values(DType::kBF16, DType::kF32)));

// (weight dtype, tokens)
class FastMatmul : public ::testing::TestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(FastMatmul, EqualsTheF32GemmOnRoundedX) {
    const auto [wdt, T] = GetParam();
    const int64_t N = 300, K = 70;
    CpuBackend be(2);
    auto x = randn(static_cast<size_t>(T * K), 11, 2.0f);
    auto w = randn(static_cast<size_t>(N * K), 12, 0.5f);
    Buffer xb = f32_buffer(x, {T, K});
    Buffer wb = store_buffer(w, wdt, {N, K});
    std::vector<float> xr(x.size());
    const DType xdt = wdt == DType::kF16 ? DType::kF16 : DType::kBF16;
    for (size_t i = 0; i < x.size(); ++i) {
        xr[i] = xdt == DType::kF16 ? f16_to_f32(f32_to_f16(x[i])) : round_bf16(x[i]);
    }
    Buffer xrb = f32_buffer(xr, {T, K});

    Buffer fast(DType::kF32, {T, N}), ref(DType::kF32, {T, N}), exact(DType::kF32, {T, N});
    be.set_precision(Precision::kFast);
    be.matmul(fast.view(), xb.view(), wb.view());
    be.set_precision(Precision::kExact);
    // On CPUs with AMX or AVX512_BF16, `fast` GEMMs of bf16 weights over more than
    // kBf16DotMinRows rows run on the bf16 GEMM, whose fp32 sums go in the instruction's order
    // rather than SGEMM's (kernels_cpu_bf16_dot_test checks it against exact sums): there the
    // reference is that kernel on the same operands.
    const auto kernel = CpuBackend::fast_bf16_kernel();
    if (wdt == DType::kBF16 && T > CpuBackend::kBf16DotMinRows &&
        kernel != kernels::cpu::Bf16DotKernel::kEmulated) {
        kernels::cpu::matmul_bf16_dot(ref.as<float>(), x.data(),
                                      static_cast<const uint16_t*>(wb.data()), T, N, K, kernel);
    } else {
        be.matmul(ref.view(), xrb.view(), wb.view());
    }
    be.matmul(exact.view(), xb.view(), wb.view());
    EXPECT_EQ(0, std::memcmp(fast.data(), ref.data(), fast.nbytes()));
    // x is unchanged by a fast call, and rounding x really changes the product.
    EXPECT_EQ(0, std::memcmp(xb.data(), x.data(), xb.nbytes()));
    EXPECT_NE(0, std::memcmp(fast.data(), exact.data(), fast.nbytes()));
}

INSTANTIATE_TEST_SUITE_P(CpuFast, FastMatmul,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16),
                                            ::testing::Values(1, 3, 20)));

}  // namespace
}  // namespace fot
