// The `fast` precision's attention on the GPU (runtime/core/precision.h): the tensor-core
// kernel (kernels/cuda/attention_tc.cu) and the fp32 kernels with fast roundings, against
//  - a naive double-precision implementation of the same rounding rules (bf16 q, k, v and
//    P.V operand; l sums the unrounded probabilities), and
//  - CpuBackend in the same mode,
// over head dims 16/64/100/128, one to 2048 queries, causal and not, key counts that are not
// multiples of any tile, bf16 and f32 stores, with and without key splits.
// Under the CUDA emulator (kernels/cuda/emu) it also shows that deleting any barrier of the
// tensor-core kernel makes these checks fail. Skips without a GPU (or emulator).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/backend/cuda_backend.h"
#include "runtime/core/dtype.h"
#include "tests/kernels/cuda_test_util.h"

#if defined(FOT_CUDA_EMU_BUILD)
#include "cuda_runtime.h"  // the emulator's test controls (emu::skip_barrier, emu::set_seed)
#endif

namespace fot {
namespace {

using testing::all_close;
using testing::fetch_f32;
using testing::make_buffer;
using testing::random_floats;
using testing::Tol;

constexpr int64_t kNoMask = INT64_MAX / 2;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Tolerances. m is a max of scores: only dot-product summation order differs (q and k are
// rounded identically everywhere), so it pins the bf16 rounding of q and k. l sums fp32
// exponentials. The output also carries the bf16 rounding of P, taken relative to the running
// max of whichever key block an implementation works in: up to 2^-9 of each weight.
constexpr Tol kFastMax{2e-5, 2e-5};
constexpr Tol kFastSum{1e-5, 2e-4};
constexpr Tol kFastOut{4e-3, 1e-2};

struct FastCase {
    int64_t D, T, at, S_mem;
    DType store;  // local and memory stores
    int64_t H = 2;
};
std::ostream& operator<<(std::ostream& os, const FastCase& c) {
    return os << "D" << c.D << "_T" << c.T << "_at" << c.at << "_S" << c.S_mem << "_"
              << dtype_name(c.store) << "_H" << c.H;
}

// Naive fast attention in double: folds keys [0, S) of k/v [H, cap, D] into part [H, T, D+2].
void naive_fold(std::vector<double>& part, const std::vector<float>& q, int64_t q_stride,
                const std::vector<float>& k, const std::vector<float>& v, int64_t cap, int64_t H,
                int64_t T, int64_t S, int64_t D, double scale, int64_t causal_offset) {
    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            double* st = &part[(h * T + t) * (D + 2)];
            std::vector<double> s;
            int64_t kend = causal_offset >= S ? S : std::min(S, t + causal_offset + 1);
            kend = std::max<int64_t>(kend, 0);
            double M = st[D];
            for (int64_t j = 0; j < kend; ++j) {
                double dot = 0;
                for (int64_t d = 0; d < D; ++d) {
                    dot += static_cast<double>(round_bf16(q[t * q_stride + h * D + d])) *
                           round_bf16(k[(h * cap + j) * D + d]);
                }
                s.push_back(dot * scale);
                M = std::max(M, s.back());
            }
            if (M == kNegInf) continue;
            const double corr = st[D] == kNegInf ? 0.0 : std::exp(st[D] - M);
            double l = st[D + 1] * corr;
            std::vector<double> o(D);
            for (int64_t d = 0; d < D; ++d) o[d] = st[d] * corr;
            for (int64_t j = 0; j < kend; ++j) {
                const double p = std::exp(s[j] - M);
                l += p;
                const double pr = round_bf16(static_cast<float>(p));
                for (int64_t d = 0; d < D; ++d) o[d] += pr * round_bf16(v[(h * cap + j) * D + d]);
            }
            for (int64_t d = 0; d < D; ++d) st[d] = o[d];
            st[D] = M;
            st[D + 1] = l;
        }
    }
}

struct Split {
    std::vector<float> m, l, out;  // out = o / l
};
Split split_part(const std::vector<float>& p, int64_t rows, int64_t D) {
    Split s;
    for (int64_t r = 0; r < rows; ++r) {
        const float* st = &p[r * (D + 2)];
        s.m.push_back(st[D]);
        s.l.push_back(st[D + 1]);
        for (int64_t d = 0; d < D; ++d) s.out.push_back(st[D + 1] > 0 ? st[d] / st[D + 1] : 0.f);
    }
    return s;
}

// One case's data on both backends, and the naive result of: init, local causal part over
// [0, at + T), memory part without mask.
class FastAttention {
  public:
    FastAttention(Backend& cpu, Backend& gpu, const FastCase& c) : c_(c), cpu_(cpu), gpu_(gpu) {
        const int64_t H = c.H, D = c.D, T = c.T;
        S_loc_ = c.at + c.T;
        cap_loc_ = S_loc_ + 3;
        cap_mem_ = c.S_mem + 5;
        q_stride_ = H * D + 4;
        scale_ = 1.0f / std::sqrt(static_cast<float>(D));
        q_ = random_floats(T * q_stride_, 40, -2.f, 2.f);
        kl_ = random_floats(H * cap_loc_ * D, 41, -2.f, 2.f);
        vl_ = random_floats(H * cap_loc_ * D, 42);
        km_ = random_floats(H * cap_mem_ * D, 43, -2.f, 2.f);
        vm_ = random_floats(H * cap_mem_ * D, 44);
    }

    std::vector<float> naive() const {
        const int64_t H = c_.H, D = c_.D, T = c_.T;
        std::vector<double> part(H * T * (D + 2), 0.0);
        for (int64_t r = 0; r < H * T; ++r) part[r * (D + 2) + D] = kNegInf;
        naive_fold(part, q_, q_stride_, kl_, vl_, cap_loc_, H, T, S_loc_, D, scale_, c_.at);
        naive_fold(part, q_, q_stride_, km_, vm_, cap_mem_, H, T, c_.S_mem, D, scale_, kNoMask);
        return std::vector<float>(part.begin(), part.end());
    }

    // The same through a backend's ops (precision kFast).
    std::vector<float> run(Backend& b) const {
        const int64_t H = c_.H, D = c_.D, T = c_.T;
        const Precision saved = b.precision();
        b.set_precision(Precision::kFast);
        Buffer q = make_buffer(b, DType::kF32, {T, q_stride_}, q_);
        Buffer kl = make_buffer(b, c_.store, {H, cap_loc_, D}, kl_);
        Buffer vl = make_buffer(b, c_.store, {H, cap_loc_, D}, vl_);
        Buffer km = make_buffer(b, c_.store, {H, cap_mem_, D}, km_);
        Buffer vm = make_buffer(b, c_.store, {H, cap_mem_, D}, vm_);
        Buffer part =
            make_buffer(b, DType::kF32, {H, T, D + 2}, std::vector<float>(H * T * (D + 2), 7.f));
        b.attn_partial_init(part.view());
        b.attn_accumulate(part.view(), q.view(), kl.view(), vl.view(), S_loc_, scale_, c_.at);
        b.attn_accumulate(part.view(), q.view(), km.view(), vm.view(), c_.S_mem, scale_, kNoMask);
        b.set_precision(saved);
        return fetch_f32(b, part.view());
    }

    int64_t rows() const { return c_.H * c_.T; }

  private:
    FastCase c_;
    Backend& cpu_;
    Backend& gpu_;
    int64_t S_loc_, cap_loc_, cap_mem_, q_stride_;
    float scale_;
    std::vector<float> q_, kl_, vl_, km_, vm_;
};

::testing::AssertionResult close_parts(const std::vector<float>& got,
                                       const std::vector<float>& want, int64_t rows, int64_t D) {
    const Split g = split_part(got, rows, D), w = split_part(want, rows, D);
    if (auto r = all_close(g.m, w.m, kFastMax); !r) return r << " (running max m)";
    if (auto r = all_close(g.l, w.l, kFastSum); !r) return r << " (sum of exponentials l)";
    if (auto r = all_close(g.out, w.out, kFastOut); !r) return r << " (normalised output)";
    return ::testing::AssertionSuccess();
}

class CudaAttentionFast : public ::testing::TestWithParam<FastCase> {
  protected:
    void SetUp() override {
        FOT_SKIP_IF_NO_GPU();
        gpu_ = std::make_unique<CudaBackend>(0);
    }
    CpuBackend cpu_;
    std::unique_ptr<CudaBackend> gpu_;
};

TEST_P(CudaAttentionFast, MatchesNaiveRoundingAndCpuBackend) {
    const FastCase c = GetParam();
    FastAttention a(cpu_, *gpu_, c);
    const auto want = a.naive();
    const auto got = a.run(*gpu_);
    EXPECT_TRUE(close_parts(got, want, a.rows(), c.D)) << "GPU vs naive";
    EXPECT_TRUE(close_parts(a.run(cpu_), want, a.rows(), c.D)) << "CpuBackend vs naive";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttentionFast,
    ::testing::Values(
        // Decode (fp32 kernel with fast roundings), with and without key splits.
        FastCase{16, 1, 0, 0, DType::kBF16}, FastCase{100, 1, 37, 5000, DType::kBF16, 4},
        FastCase{64, 3, 5, 1000, DType::kF32}, FastCase{128, 8, 30, 700, DType::kBF16},
        // Tensor-core kernel: partial query tiles, key counts off every tile, split keys.
        FastCase{100, 9, 0, 97, DType::kBF16}, FastCase{16, 64, 64, 33, DType::kBF16},
        FastCase{64, 64, 0, 700, DType::kBF16}, FastCase{100, 70, 3, 333, DType::kBF16, 3},
        FastCase{128, 130, 10, 1000, DType::kBF16}, FastCase{100, 2048, 0, 150, DType::kBF16, 1},
        // f32 stores in fast mode: the fp32 tiled kernel with the same roundings.
        FastCase{100, 65, 0, 200, DType::kF32}),
    [](const ::testing::TestParamInfo<FastCase>& i) {
        std::ostringstream os;
        os << i.param;
        return os.str();
    });

#if defined(FOT_CUDA_EMU_BUILD)
// Deleting any one __syncthreads of the tensor-core kernel must be caught: the emulator runs
// threads in a random order between barriers, completes cp.async copies at random moments
// before their wait, and poisons shared memory, so a missing barrier reads poison or a
// half-written tile. A few seeds per barrier; every barrier must be caught by one of them.
TEST(EmulatedFaults, EveryBarrierOfTheTensorCoreKernelIsNeeded) {
    const std::string rel = "kernels/cuda/attention_tc.cu";
    std::ifstream src(std::string(FOT_SOURCE_DIR) + "/" + rel);
    ASSERT_TRUE(src.good()) << rel;
    std::vector<int> lines;
    std::string text;
    for (int n = 1; std::getline(src, text); ++n) {
        const auto first = text.find_first_not_of(' ');
        if (first != std::string::npos && text.compare(first, 16, "__syncthreads();") == 0)
            lines.push_back(n);
    }
    ASSERT_GE(lines.size(), 3u) << "expected the kernel's barriers in " << rel;

    CpuBackend cpu;
    CudaBackend gpu(0);
    // One 64-query tile, 2 local + 6 memory key tiles: every barrier guards something here.
    const FastCase c{100, 64, 40, 330, DType::kBF16, 1};
    FastAttention a(cpu, gpu, c);
    const auto want = a.naive();
    ASSERT_TRUE(close_parts(a.run(gpu), want, a.rows(), c.D)) << "the intact kernel";
    for (int line : lines) {
        bool caught = false;
        for (uint64_t seed = 1; seed <= 4 && !caught; ++seed) {
            emu::set_seed(seed);
            emu::skip_barrier(rel.c_str(), line);
            caught = !close_parts(a.run(gpu), want, a.rows(), c.D);
            emu::skip_barrier(nullptr, 0);
        }
        EXPECT_TRUE(caught) << "deleting the __syncthreads at " << rel << ":" << line
                            << " went unnoticed";
    }
    emu::set_seed(1);
}
#endif

}  // namespace
}  // namespace fot
