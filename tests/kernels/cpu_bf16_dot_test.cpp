// The AVX512_BF16 and AMX GEMMs (kernels/cpu/matmul_bf16.cpp): their packing, blocking and
// edge handling through the emulated micro-kernels on any CPU, against a double-precision sum
// of the same bf16 operands; and, on CPUs with the instructions, the native kernels against
// the emulated ones and CpuBackend's `fast` matmul taking the best of them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/core/dtype.h"
#include "tests/kernels/randn.h"

namespace fot::kernels::cpu {
namespace {

using ::fot::testing::randn;

struct Problem {
    int64_t T, N, K;
    std::vector<float> x;
    std::vector<uint16_t> w;
};

Problem make(int64_t T, int64_t N, int64_t K, uint64_t seed) {
    Problem p{T, N, K, randn(T * K, seed), {}};
    const auto wf = randn(N * K, seed + 1);
    p.w.resize(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) p.w[i] = f32_to_bf16(wf[i]);
    return p;
}

std::vector<float> run(const Problem& p, Bf16DotKernel kernel) {
    std::vector<float> out(static_cast<size_t>(p.T * p.N), -7.f);
    matmul_bf16_dot(out.data(), p.x.data(), p.w.data(), p.T, p.N, p.K, kernel);
    return out;
}

// |got - exact| <= 2 K u sum |x w| per output (u = 2^-24): any fp32 summation order of K exact
// products is within K u sum |x w| of the exact sum; the factor 2 is headroom, far below
// what a wrong pairing or a missing pair would give (~ one product, |x w| ~ 1).
void expect_close_to_exact(const Problem& p, const std::vector<float>& got) {
    for (int64_t t = 0; t < p.T; ++t) {
        for (int64_t n = 0; n < p.N; ++n) {
            double sum = 0, mag = 0;
            for (int64_t k = 0; k < p.K; ++k) {
                const double prod =
                    double(round_bf16(p.x[t * p.K + k])) * double(bf16_to_f32(p.w[n * p.K + k]));
                sum += prod;
                mag += std::fabs(prod);
            }
            const double bound = 2.0 * double(p.K) * 0x1p-24 * mag + 1e-30;
            ASSERT_NEAR(got[t * p.N + n], sum, bound)
                << "T " << p.T << " N " << p.N << " K " << p.K << " at (" << t << ", " << n << ")";
        }
    }
}

TEST(CpuBf16Dot, EmulatedKernelIsTheBf16DotProductForEveryEdge) {
    // Row blocks of 8 and panels of 32 columns, with and without remainders; odd K (a zero
    // partner in the last pair); K = 1.
    for (int64_t T : {1, 7, 8, 9, 21}) {
        for (int64_t N : {1, 31, 32, 33, 70}) {
            for (int64_t K : {1, 2, 3, 64, 101}) {
                const Problem p = make(T, N, K, 100 + T * 7 + N * 3 + K);
                expect_close_to_exact(p, run(p, Bf16DotKernel::kEmulated));
            }
        }
    }
}

TEST(CpuBf16Dot, EmulatedStepAddsTheOddProductThenTheEvenOne) {
    // x = (0, -1, 2^-30, 1), w = 1: pair 0 leaves acc = -1. Pair 1 as vdpbf16ps does it: odd
    // first, -1 + 1 = 0, then 0 + 2^-30 = 2^-30. Even first (or k in order) would give
    // (-1 + 2^-30) + 1 = 0, since 2^-30 is lost next to 1.
    Problem p{1, 1, 4, {0.f, -1.f, 0x1p-30f, 1.f}, {}};
    p.w.assign(4, f32_to_bf16(1.f));
    EXPECT_EQ(run(p, Bf16DotKernel::kEmulated)[0], 0x1p-30f);
}

TEST(CpuBf16Dot, NativeKernelMatchesTheEmulatedOne) {
    if (!bf16_dot_available()) {
        GTEST_SKIP() << "this CPU has no AVX512_BF16";
    }
    int64_t identical = 0, total = 0;
    for (int64_t T : {5, 8, 19}) {
        for (int64_t N : {31, 64, 65}) {
            for (int64_t K : {3, 64, 3200}) {
                const Problem p = make(T, N, K, 500 + T + N + K);
                const auto native = run(p, Bf16DotKernel::kNative);
                expect_close_to_exact(p, native);
                const auto emu = run(p, Bf16DotKernel::kEmulated);
                identical += std::memcmp(native.data(), emu.data(), native.size() * 4) == 0;
                ++total;
            }
        }
    }
    // Intel's documented arithmetic gives the same bits; say so when this CPU differs.
    RecordProperty("bit_identical_shapes", std::to_string(identical) + "/" + std::to_string(total));
    std::printf("native = emulated bit for bit on %lld of %lld shapes\n",
                static_cast<long long>(identical), static_cast<long long>(total));
}

TEST(CpuBf16Dot, EmulatedAmxKernelIsTheBf16DotProductForEveryEdge) {
    // 32-row blocks and 16-pair steps, with and without remainders (x padded to whole blocks,
    // pairs to whole steps); odd K; 32-column panels with remainders.
    for (int64_t T : {1, 16, 31, 32, 33, 70}) {
        for (int64_t N : {1, 17, 32, 33}) {
            for (int64_t K : {1, 31, 32, 33, 64, 101}) {
                const Problem p = make(T, N, K, 300 + T * 7 + N * 3 + K);
                expect_close_to_exact(p, run(p, Bf16DotKernel::kAmxEmulated));
            }
        }
    }
}

TEST(CpuBf16Dot, EmulatedAmxStepAddsTheEvenProductThenTheOddOne) {
    // The mirror of the vdpbf16ps case: x = (0, -1, 1, 2^-30), w = 1. Pair 1 even first:
    // -1 + 1 = 0, then 0 + 2^-30 = 2^-30 (odd first would lose 2^-30 next to 1).
    Problem p{1, 1, 4, {0.f, -1.f, 1.f, 0x1p-30f}, {}};
    p.w.assign(4, f32_to_bf16(1.f));
    EXPECT_EQ(run(p, Bf16DotKernel::kAmxEmulated)[0], 0x1p-30f);
    EXPECT_EQ(run(p, Bf16DotKernel::kEmulated)[0], 0.f);
}

TEST(CpuBf16Dot, AmxKernelIsTheBf16DotProduct) {
    if (!bf16_amx_available()) {
        GTEST_SKIP() << "this CPU (or OS) has no AMX-BF16";
    }
    int64_t identical = 0, total = 0;
    for (int64_t T : {5, 32, 45, 100}) {
        for (int64_t N : {31, 64, 65}) {
            for (int64_t K : {3, 64, 100, 3200}) {
                const Problem p = make(T, N, K, 700 + T + N + K);
                const auto native = run(p, Bf16DotKernel::kAmx);
                expect_close_to_exact(p, native);
                const auto emu = run(p, Bf16DotKernel::kAmxEmulated);
                identical += std::memcmp(native.data(), emu.data(), native.size() * 4) == 0;
                ++total;
            }
        }
    }
    // The SDM's sequential description is not the hardware's order (4 of 48 shapes bit for bit
    // on a 2026 Xeon): the bound above is the check; the count is for the record.
    RecordProperty("bit_identical_shapes", std::to_string(identical) + "/" + std::to_string(total));
    std::printf("AMX = emulated bit for bit on %lld of %lld shapes\n",
                static_cast<long long>(identical), static_cast<long long>(total));
}

// matmul_bf16_xv: the same products with the second operand as [K][ldv] rows (attention's
// values); v is w transposed, so the exact sums are expect_close_to_exact's.
std::vector<float> run_xv(const Problem& p, Bf16DotKernel kernel) {
    const int64_t ldv = p.N + 3;  // rows wider than the columns used
    std::vector<uint16_t> v(static_cast<size_t>(p.K * ldv), 0x7fc0);  // NaN where unused
    for (int64_t n = 0; n < p.N; ++n) {
        for (int64_t k = 0; k < p.K; ++k) v[k * ldv + n] = p.w[n * p.K + k];
    }
    std::vector<float> out(static_cast<size_t>(p.T * p.N), -7.f);
    matmul_bf16_xv(out.data(), p.x.data(), v.data(), ldv, p.T, p.N, p.K, kernel);
    return out;
}

TEST(CpuBf16Dot, EmulatedKernelsOfValueRowsAreTheBf16DotProductForEveryEdge) {
    // Both blockings over value rows: AMX (32-row blocks, 16-pair steps) and vdpbf16ps (8-row
    // calls, 32-column panels, no pair padding).
    for (const auto kernel : {Bf16DotKernel::kAmxEmulated, Bf16DotKernel::kEmulated}) {
        for (int64_t T : {1, 9, 33, 64}) {
            for (int64_t N : {1, 17, 33, 100}) {
                for (int64_t K : {1, 31, 256}) {
                    const Problem p = make(T, N, K, 1300 + T * 7 + N * 3 + K);
                    expect_close_to_exact(p, run_xv(p, kernel));
                }
            }
        }
    }
}

TEST(CpuBf16Dot, NativeKernelOfValueRowsMatchesTheEmulatedOne) {
    // Attention's P.V on CPUs with AVX512_BF16 and no AMX (fast_bf16_dot_kernel()).
    if (!bf16_dot_available()) {
        GTEST_SKIP() << "this CPU has no AVX512_BF16";
    }
    int64_t identical = 0, total = 0;
    for (int64_t T : {5, 64}) {
        for (int64_t N : {64, 100}) {
            for (int64_t K : {31, 256}) {
                const Problem p = make(T, N, K, 1900 + T + N + K);
                const auto native = run_xv(p, Bf16DotKernel::kNative);
                expect_close_to_exact(p, native);
                identical += native == run_xv(p, Bf16DotKernel::kEmulated);
                ++total;
            }
        }
    }
    // As for the weight layout: the count is for the record (8 of 8 on a Zen 4 EPYC).
    RecordProperty("bit_identical_shapes", std::to_string(identical) + "/" + std::to_string(total));
    std::printf("native = emulated bit for bit on %lld of %lld shapes\n",
                static_cast<long long>(identical), static_cast<long long>(total));
}

TEST(CpuBf16Dot, AmxKernelOfValueRowsIsTheBf16DotProduct) {
    if (!bf16_amx_available()) {
        GTEST_SKIP() << "this CPU (or OS) has no AMX-BF16";
    }
    for (int64_t T : {5, 64}) {
        for (int64_t N : {64, 100}) {
            for (int64_t K : {31, 256}) {
                const Problem p = make(T, N, K, 1700 + T + N + K);
                expect_close_to_exact(p, run_xv(p, Bf16DotKernel::kAmx));
            }
        }
    }
}

TEST(CpuBf16Dot, FastMatmulOfBf16WeightsTakesTheDotKernelWhenAvailable) {
    // CpuBackend::matmul in `fast` with bf16 weights and > 4 rows: the dot kernel when the CPU
    // has it (same bits as calling it), else SGEMM on rounded operands; both near exact.
    const Problem p = make(12, 40, 96, 900);
    CpuBackend be(1);
    be.set_precision(Precision::kFast);
    Buffer x(DType::kF32, {p.T, p.K}), w(DType::kBF16, {p.N, p.K}), out(DType::kF32, {p.T, p.N});
    std::memcpy(x.data(), p.x.data(), p.x.size() * 4);
    std::memcpy(w.data(), p.w.data(), p.w.size() * 2);
    be.matmul(out.view(), x.view(), w.view());
    std::vector<float> got(static_cast<size_t>(p.T * p.N));
    std::memcpy(got.data(), out.data(), got.size() * 4);
    expect_close_to_exact(p, got);
    if (bf16_amx_available()) {
        EXPECT_EQ(got, run(p, Bf16DotKernel::kAmx));
    } else if (bf16_dot_available()) {
        EXPECT_EQ(got, run(p, Bf16DotKernel::kNative));
    }
}

}  // namespace
}  // namespace fot::kernels::cpu
