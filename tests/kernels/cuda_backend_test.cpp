// Every CudaBackend op against CpuBackend (the reference) on random data, over the shapes the
// model uses (head dims 16/64/100/128, one and many queries, empty/short/long key sets,
// causal and not, f32/bf16/f16 stores). Tolerances are declared per op next to each check:
// fp32 ops differ from the CPU only in summation order; conversions and selections that
// involve no arithmetic must match bit for bit. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <tuple>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/ops.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/backend/cuda_backend.h"
#include "runtime/core/status.h"
#include "tests/kernels/cuda_test_util.h"

namespace fot {
namespace {

using testing::all_close;
using testing::fetch_bytes;
using testing::fetch_f32;
using testing::fetch_i64;
using testing::make_buffer;
using testing::make_i64_buffer;
using testing::random_floats;
using testing::Tol;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int64_t kNoMask = INT64_MAX / 2;

// Per-op tolerances (see the file comment).
constexpr Tol kExact{0.0, 0.0};
constexpr Tol kElementwise{1e-7, 1e-6};  // expf vs std::exp
constexpr Tol kNorm{1e-6, 1e-5};
constexpr Tol kRope{1e-5, 1e-5};     // cosf/sinf ulps at positions up to 1e5
constexpr Tol kAttnOut{2e-5, 2e-5};  // normalised attention output
constexpr Tol kAttnMax{1e-5, 1e-5};  // running max m (a score)
constexpr Tol kAttnSum{1e-5, 3e-5};  // sum of exponentials l
constexpr Tol kScores{1e-5, 1e-5};   // top-k scores (dot products)
constexpr Tol kMerge{1e-6, 1e-5};
// fp32 sums of K products bounded by `amp` differ by order (random walk) ~ eps * amp * sqrt(K);
// TF32 inputs would miss this by ~50x.
Tol gemm_tol(int64_t K, double amp) {
    return {3e-6 * amp * std::sqrt(static_cast<double>(K)), 1e-5};
}

class CudaOps : public ::testing::Test {
  protected:
    void SetUp() override {
        FOT_SKIP_IF_NO_GPU();
        gpu_ = std::make_unique<CudaBackend>(0);
    }
    // A pair of buffers with the same contents on both backends.
    struct Pair {
        Buffer c, g;
    };
    Pair both(DType dt, Shape s, const std::vector<float>& v) {
        return {make_buffer(cpu_, dt, s, v), make_buffer(*gpu_, dt, s, v)};
    }
    Pair both_i64(Shape s, const std::vector<int64_t>& v) {
        return {make_i64_buffer(cpu_, s, v), make_i64_buffer(*gpu_, s, v)};
    }
    std::vector<float> gpu_f32(const Buffer& b) { return fetch_f32(*gpu_, b.view()); }
    std::vector<float> cpu_f32(const Buffer& b) { return fetch_f32(cpu_, b.view()); }

    CpuBackend cpu_;
    std::unique_ptr<CudaBackend> gpu_;
};

TEST_F(CudaOps, AllocIsZeroedAndMemoryRoundTrips) {
    Buffer z = gpu_->alloc(DType::kF32, {3, 5});
    EXPECT_EQ(z.device(), Device::cuda(0));
    EXPECT_TRUE(all_close(gpu_f32(z), std::vector<float>(15, 0.f), kExact));
    const auto v = random_floats(12, 1);
    Buffer b = make_buffer(*gpu_, DType::kF32, {4, 3}, v);
    EXPECT_TRUE(all_close(gpu_f32(b), v, kExact));
    // copy_rows, disjoint and overlapping (memmove semantics, as the CPU backend).
    Pair p = both(DType::kF32, {4, 3}, v);
    Pair d = both(DType::kF32, {6, 3}, std::vector<float>(18, 0.f));
    cpu_.copy_rows(d.c.view(), 2, p.c.view(), 4);
    gpu_->copy_rows(d.g.view(), 2, p.g.view(), 4);
    EXPECT_TRUE(all_close(gpu_f32(d.g), cpu_f32(d.c), kExact));
    cpu_.copy_rows(p.c.view(), 1, first_rows(p.c.view(), 3), 3);
    gpu_->copy_rows(p.g.view(), 1, first_rows(p.g.view(), 3), 3);
    EXPECT_TRUE(all_close(gpu_f32(p.g), cpu_f32(p.c), kExact));
}

TEST_F(CudaOps, RejectsHostMemoryWithAClearError) {
    Buffer host(DType::kF32, {2, 2});
    Buffer dev = gpu_->alloc(DType::kF32, {2, 2});
    try {
        gpu_->add(dev.view(), host.view(), dev.view());
        FAIL() << "expected fot::Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("add input a is not memory of cuda:0"),
                  std::string::npos)
            << e.what();
    }
}

TEST_F(CudaOps, AddAndSiluMul) {
    for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
        SCOPED_TRACE(n);
        Pair a = both(DType::kF32, {n}, random_floats(n, 2, -6.f, 6.f));
        Pair b = both(DType::kF32, {n}, random_floats(n, 3));
        Pair o = both(DType::kF32, {n}, std::vector<float>(n, 0.f));
        cpu_.add(o.c.view(), a.c.view(), b.c.view());
        gpu_->add(o.g.view(), a.g.view(), b.g.view());
        EXPECT_TRUE(all_close(gpu_f32(o.g), cpu_f32(o.c), kExact));
        cpu_.silu_mul(o.c.view(), a.c.view(), b.c.view());
        gpu_->silu_mul(o.g.view(), a.g.view(), b.g.view());
        EXPECT_TRUE(all_close(gpu_f32(o.g), cpu_f32(o.c), kElementwise));
    }
}

TEST_F(CudaOps, RmsNorm) {
    for (int64_t T : {1, 7}) {
        for (int64_t C : {64, 3200}) {
            SCOPED_TRACE(::testing::Message() << "T=" << T << " C=" << C);
            Pair x = both(DType::kF32, {T, C}, random_floats(T * C, 4, -3.f, 3.f));
            Pair w = both(DType::kF32, {C}, random_floats(C, 5, 0.5f, 1.5f));
            Pair o = both(DType::kF32, {T, C}, std::vector<float>(T * C, 0.f));
            cpu_.rmsnorm(o.c.view(), x.c.view(), w.c.view(), 1e-6f);
            gpu_->rmsnorm(o.g.view(), x.g.view(), w.g.view(), 1e-6f);
            EXPECT_TRUE(all_close(gpu_f32(o.g), cpu_f32(o.c), kNorm));
        }
    }
}

struct GemmShape {
    int64_t T, N, K;
};

TEST_F(CudaOps, MatmulF32IsTrueFp32) {
    // T <= 4 with aligned rows runs the decode GEMV (gemv.cu), the rest cuBLAS.
    for (GemmShape s : {GemmShape{1, 96, 64}, GemmShape{37, 200, 320}, GemmShape{130, 256, 3200},
                        GemmShape{3, 131, 3200}, GemmShape{4, 257, 864}, GemmShape{2, 50, 102}}) {
        SCOPED_TRACE(::testing::Message() << s.T << "x" << s.N << "x" << s.K);
        Pair x = both(DType::kF32, {s.T, s.K}, random_floats(s.T * s.K, 6));
        Pair w = both(DType::kF32, {s.N, s.K}, random_floats(s.N * s.K, 7));
        Pair o = both(DType::kF32, {s.T, s.N}, std::vector<float>(s.T * s.N, 0.f));
        cpu_.matmul(o.c.view(), x.c.view(), w.c.view());
        gpu_->matmul(o.g.view(), x.g.view(), w.g.view());
        EXPECT_TRUE(all_close(gpu_f32(o.g), cpu_f32(o.c), gemm_tol(s.K, 1.0)));
    }
}

TEST_F(CudaOps, MatmulLowPrecisionWeightsRoundActivationsOnce) {
    for (DType wt : {DType::kBF16, DType::kF16}) {
        for (GemmShape s : {GemmShape{1, 96, 64}, GemmShape{19, 130, 3200}, GemmShape{2, 131, 3200},
                            GemmShape{4, 33, 8640}, GemmShape{3, 40, 100}}) {
            SCOPED_TRACE(::testing::Message()
                         << dtype_name(wt) << " " << s.T << "x" << s.N << "x" << s.K);
            const auto xv = random_floats(s.T * s.K, 8, -4.f, 4.f);
            Pair w = both(wt, {s.N, s.K}, random_floats(s.N * s.K, 9));
            Pair o = both(DType::kF32, {s.T, s.N}, std::vector<float>(s.T * s.N, 0.f));
            // The documented contract (kernels/cuda/blas.h): x rounded to w's type, then an
            // fp32-accumulated product. The CPU reference on the rounded x must agree to fp32.
            std::vector<unsigned char> tmp(xv.size() * 2);
            std::vector<float> xr(xv.size());
            convert_from_f32(xv.data(), tmp.data(), wt, xv.size());
            convert_to_f32(tmp.data(), wt, xr.data(), xr.size());
            Buffer xc = make_buffer(cpu_, DType::kF32, {s.T, s.K}, xr);
            Buffer xg = make_buffer(*gpu_, DType::kF32, {s.T, s.K}, xv);
            cpu_.matmul(o.c.view(), xc.view(), w.c.view());
            gpu_->matmul(o.g.view(), xg.view(), w.g.view());
            EXPECT_TRUE(all_close(gpu_f32(o.g), cpu_f32(o.c), gemm_tol(s.K, 4.0)));
        }
    }
}

TEST_F(CudaOps, RopeRotateHalf) {
    const int64_t H = 3;
    for (int64_t D : {16, 64, 100, 128}) {
        for (int64_t T : {1, 5}) {
            for (int64_t pos : {int64_t{0}, int64_t{1000}, int64_t{100000}}) {
                SCOPED_TRACE(::testing::Message() << "D=" << D << " T=" << T << " pos=" << pos);
                const int64_t W = H * D + 3;  // extra columns must stay untouched
                Pair x = both(DType::kF32, {T, W}, random_floats(T * W, 10, -2.f, 2.f));
                cpu_.rope(x.c.view(), H, D, pos, 10000.f);
                gpu_->rope(x.g.view(), H, D, pos, 10000.f);
                EXPECT_TRUE(all_close(gpu_f32(x.g), cpu_f32(x.c), kRope));
            }
        }
    }
}

TEST_F(CudaOps, EmbeddingGathersThisShardAndZerosTheRest) {
    const int64_t rows = 50, C = 96, row_begin = 100;
    const std::vector<int32_t> ids = {99, 100, 149, 150, 120, 0, 131};
    const int64_t T = static_cast<int64_t>(ids.size());
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
        SCOPED_TRACE(dtype_name(dt));
        Pair table = both(dt, {rows, C}, random_floats(rows * C, 11));
        Pair o = both(DType::kF32, {T, C}, std::vector<float>(T * C, 7.f));
        cpu_.embedding(o.c.view(), ids.data(), table.c.view(), row_begin);
        gpu_->embedding(o.g.view(), ids.data(), table.g.view(), row_begin);
        EXPECT_TRUE(all_close(gpu_f32(o.g), cpu_f32(o.c), kExact));
    }
}

float from_bits(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

TEST_F(CudaOps, ScatterHeadsRoundsBitForBitLikeTheCpu) {
    const int64_t H = 3, D = 10, cap = 12, at = 4, T = 5, stride = H * D + 2;
    auto xv = random_floats(T * stride, 12, -300.f, 300.f);
    // Exact bf16 ties (both directions of round-half-even), f16 ties, f16 overflow and
    // subnormals, signed zero.
    const float special[] = {from_bits(0x3f808000u),
                             from_bits(0x3f818000u),
                             from_bits(0xbf808000u),
                             1.0f + 1.0f / 2048.0f,
                             1.0f + 3.0f / 2048.0f,
                             70000.f,
                             -1e-6f,
                             3e-8f,
                             -0.0f,
                             65519.f};
    for (size_t i = 0; i < std::size(special); ++i) xv[i * 3] = special[i];
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
        SCOPED_TRACE(dtype_name(dt));
        Pair x = both(DType::kF32, {T, stride}, xv);
        Pair st = both(dt, {H, cap, D}, random_floats(H * cap * D, 13));
        cpu_.scatter_heads(st.c.view(), at, x.c.view());
        gpu_->scatter_heads(st.g.view(), at, x.g.view());
        EXPECT_EQ(fetch_bytes(*gpu_, st.g.view()), fetch_bytes(cpu_, st.c.view()));
    }
}

TEST_F(CudaOps, RowMaxSumExp) {
    const int64_t T = 3, V = 32000;
    const auto lv = random_floats(T * V, 14, -20.f, 20.f);
    Buffer lg = make_buffer(*gpu_, DType::kF32, {T, V}, lv);
    Buffer mg = gpu_->alloc(DType::kF32, {T}), sg = gpu_->alloc(DType::kF32, {T});
    gpu_->row_max_sumexp(mg.view(), sg.view(), lg.view());
    std::vector<float> mc(T), sc(T);
    kernels::cpu::row_max_sumexp(lv.data(), T, V, mc.data(), sc.data());
    EXPECT_TRUE(all_close(gpu_f32(mg), mc, kExact));
    EXPECT_TRUE(all_close(gpu_f32(sg), sc, {0.0, 1e-6}));
}

TEST_F(CudaOps, LogSoftmaxPartsOfAVocabularySlice) {
    const int64_t T = 5, V = 1000, vbegin = 3000;
    const auto lv = random_floats(T * V, 15, -20.f, 20.f);
    const std::vector<int32_t> targets = {3000, 3999, 2999, 4000, -1};  // in, in, out, out, none
    Pair lg = both(DType::kF32, {T, V}, lv);
    Buffer pc = cpu_.alloc(DType::kF32, {T, 3}), pg = gpu_->alloc(DType::kF32, {T, 3});
    cpu_.logsoftmax_parts(pc.view(), lg.c.view(), targets.data(), vbegin);
    gpu_->logsoftmax_parts(pg.view(), lg.g.view(), targets.data(), vbegin);
    const auto g = gpu_f32(pg);
    const std::vector<float> c(pc.as<float>(), pc.as<float>() + 3 * T);
    for (int64_t t = 0; t < T; ++t) {
        EXPECT_EQ(g[3 * t], c[3 * t]);                                 // max: exact
        EXPECT_NEAR(g[3 * t + 1], c[3 * t + 1], 1e-6 * c[3 * t + 1]);  // sum-exp
        EXPECT_EQ(g[3 * t + 2], c[3 * t + 2]);                         // target logit
    }
    EXPECT_EQ(c[2], lv[0]);
    EXPECT_EQ(c[5], lv[V + 999]);
    EXPECT_EQ(c[8], 0.f);
    EXPECT_EQ(c[11], 0.f);
    EXPECT_EQ(c[14], 0.f);
}

// ---- attention ---------------------------------------------------------------------------------

struct AttnCase {
    int64_t D, T, at, S_mem;  // head dim, queries, local keys before them, memory rows
    DType mem_dtype;
    int64_t H = 2;
};

std::ostream& operator<<(std::ostream& os, const AttnCase& c) {
    return os << "D" << c.D << "_T" << c.T << "_at" << c.at << "_S" << c.S_mem << "_"
              << dtype_name(c.mem_dtype) << "_H" << c.H;
}

class CudaAttention : public CudaOps, public ::testing::WithParamInterface<AttnCase> {};

// The model's sequence: init, local causal part over [0, at + T), memory part without mask,
// finalize. Checks m, l and the normalised output.
TEST_P(CudaAttention, LocalThenMemoryMatchesCpu) {
    const AttnCase c = GetParam();
    const int64_t H = c.H, D = c.D, T = c.T, S_loc = c.at + c.T;
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    Pair q = both(DType::kF32, {T, H * D + 4}, random_floats(T * (H * D + 4), 20, -2.f, 2.f));
    Pair kl =
        both(DType::kF32, {H, S_loc + 3, D}, random_floats(H * (S_loc + 3) * D, 21, -2.f, 2.f));
    Pair vl = both(DType::kF32, {H, S_loc + 3, D}, random_floats(H * (S_loc + 3) * D, 22));
    const int64_t cap = c.S_mem + 5;
    Pair km = both(c.mem_dtype, {H, cap, D}, random_floats(H * cap * D, 23, -2.f, 2.f));
    Pair vm = both(c.mem_dtype, {H, cap, D}, random_floats(H * cap * D, 24));
    Pair part = both(DType::kF32, {H, T, D + 2}, std::vector<float>(H * T * (D + 2), 5.f));
    for (Backend* b : {static_cast<Backend*>(&cpu_), static_cast<Backend*>(gpu_.get())}) {
        const bool g = b == gpu_.get();
        TensorView p = g ? part.g.view() : part.c.view();
        b->attn_partial_init(p);
        b->attn_accumulate(p, g ? q.g.view() : q.c.view(), g ? kl.g.view() : kl.c.view(),
                           g ? vl.g.view() : vl.c.view(), S_loc, scale, c.at);
        b->attn_accumulate(p, g ? q.g.view() : q.c.view(), g ? km.g.view() : km.c.view(),
                           g ? vm.g.view() : vm.c.view(), c.S_mem, scale, kNoMask);
    }
    const auto pg = gpu_f32(part.g), pc = cpu_f32(part.c);
    std::vector<float> mg, mc, lg, lc;
    for (int64_t r = 0; r < H * T; ++r) {
        mg.push_back(pg[r * (D + 2) + D]);
        mc.push_back(pc[r * (D + 2) + D]);
        lg.push_back(pg[r * (D + 2) + D + 1]);
        lc.push_back(pc[r * (D + 2) + D + 1]);
    }
    EXPECT_TRUE(all_close(mg, mc, kAttnMax)) << "running max m";
    EXPECT_TRUE(all_close(lg, lc, kAttnSum)) << "sum of exponentials l";
    Pair out = both(DType::kF32, {T, H * D}, std::vector<float>(T * H * D, 9.f));
    cpu_.attn_partial_finalize(out.c.view(), part.c.view());
    gpu_->attn_partial_finalize(out.g.view(), part.g.view());
    EXPECT_TRUE(all_close(gpu_f32(out.g), cpu_f32(out.c), kAttnOut)) << "normalised output";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttention,
    ::testing::Values(
        // First token of a document: one query, one key, no memory.
        AttnCase{16, 1, 0, 0, DType::kF32}, AttnCase{64, 1, 0, 0, DType::kF32},
        AttnCase{100, 1, 0, 0, DType::kF32}, AttnCase{128, 1, 0, 0, DType::kF32},
        // Decode over a long memory (the key-split path) in every memory dtype.
        AttnCase{100, 1, 37, 5000, DType::kBF16, 4}, AttnCase{128, 1, 37, 5000, DType::kF16, 4},
        AttnCase{16, 1, 30, 3000, DType::kF32}, AttnCase{64, 2, 11, 1, DType::kBF16},
        // Decode/tiled boundaries, partial tiles, window starts.
        AttnCase{64, 3, 5, 1000, DType::kF32}, AttnCase{100, 8, 0, 700, DType::kBF16},
        AttnCase{100, 9, 0, 700, DType::kBF16}, AttnCase{16, 36, 0, 72, DType::kF32},
        AttnCase{128, 70, 3, 2000, DType::kF32}, AttnCase{100, 200, 10, 3000, DType::kBF16, 3},
        AttnCase{64, 130, 0, 0, DType::kF16}, AttnCase{16, 64, 64, 33, DType::kBF16}),
    [](const ::testing::TestParamInfo<AttnCase>& i) {
        std::ostringstream os;
        os << i.param;
        return os.str();
    });

TEST_F(CudaOps, AttentionQueriesThatSeeNoKeyFinalizeToZero) {
    // causal_offset < 0: query t sees keys j <= t - 10, so the first 10 queries see none.
    const int64_t H = 2, D = 64, T = 70, S = 30;
    Pair q = both(DType::kF32, {T, H * D}, random_floats(T * H * D, 30));
    Pair k = both(DType::kF32, {H, S, D}, random_floats(H * S * D, 31));
    Pair v = both(DType::kF32, {H, S, D}, random_floats(H * S * D, 32));
    Pair part = both(DType::kF32, {H, T, D + 2}, std::vector<float>(H * T * (D + 2), 0.f));
    Pair out = both(DType::kF32, {T, H * D}, std::vector<float>(T * H * D, 9.f));
    cpu_.attn_partial_init(part.c.view());
    gpu_->attn_partial_init(part.g.view());
    cpu_.attn_accumulate(part.c.view(), q.c.view(), k.c.view(), v.c.view(), S, 0.125f, -10);
    gpu_->attn_accumulate(part.g.view(), q.g.view(), k.g.view(), v.g.view(), S, 0.125f, -10);
    cpu_.attn_partial_finalize(out.c.view(), part.c.view());
    gpu_->attn_partial_finalize(out.g.view(), part.g.view());
    const auto og = gpu_f32(out.g);
    EXPECT_TRUE(all_close(og, cpu_f32(out.c), kAttnOut));
    for (int64_t i = 0; i < 10 * H * D; ++i) ASSERT_EQ(og[i], 0.f) << i;
}

TEST_F(CudaOps, AttentionMergeInOrderAndInPlace) {
    const int64_t H = 3, T = 5, D = 100, rows = H * T;
    for (int64_t R : {1, 2, 4}) {
        SCOPED_TRACE(R);
        std::vector<float> pv = random_floats(R * rows * (D + 2), 40, -1.f, 1.f);
        const auto mv = random_floats(R * rows, 41, -3.f, 3.f);
        const auto lv = random_floats(R * rows, 42, 0.5f, 5.f);
        for (int64_t i = 0; i < R * rows; ++i) {
            float* p = pv.data() + i * (D + 2);
            const bool empty = i % 3 == 1 || (i % rows) == rows - 1;  // last row: all empty
            if (empty) std::fill(p, p + D, 0.f);
            p[D] = empty ? -kInf : mv[i];
            p[D + 1] = empty ? 0.f : lv[i];
        }
        Pair parts = both(DType::kF32, {R, H, T, D + 2}, pv);
        Pair out = both(DType::kF32, {H, T, D + 2}, std::vector<float>(rows * (D + 2), 3.f));
        cpu_.attn_partial_merge(out.c.view(), parts.c.view());
        gpu_->attn_partial_merge(out.g.view(), parts.g.view());
        EXPECT_TRUE(all_close(gpu_f32(out.g), cpu_f32(out.c), kMerge));
        // out aliasing parts[0], as the model does after the all-gather.
        TensorView p0c = reshape(parts.c.view(), {H, T, D + 2});
        TensorView p0g = reshape(parts.g.view(), {H, T, D + 2});
        cpu_.attn_partial_merge(p0c, parts.c.view());
        gpu_->attn_partial_merge(p0g, parts.g.view());
        EXPECT_TRUE(all_close(fetch_f32(*gpu_, p0g), fetch_f32(cpu_, p0c), kMerge));
    }
}

// ---- top-k -------------------------------------------------------------------------------------

struct TopkCase {
    int64_t D, T, S, K;
    DType dtype;
    bool identical_keys = false;  // every score ties: order by position only
};

std::ostream& operator<<(std::ostream& os, const TopkCase& c) {
    return os << "D" << c.D << "_T" << c.T << "_S" << c.S << "_K" << c.K << "_"
              << dtype_name(c.dtype) << (c.identical_keys ? "_ties" : "");
}

class CudaTopk : public CudaOps, public ::testing::WithParamInterface<TopkCase> {};

// Global positions that run against the row order, so ties must use positions, not rows.
std::vector<int64_t> reversed_positions(int64_t S) {
    std::vector<int64_t> p(static_cast<size_t>(std::max<int64_t>(S, 1)));
    for (int64_t i = 0; i < S; ++i) p[i] = 5000 + 3 * (S - i);
    return p;
}

TEST_P(CudaTopk, MatchesCpuUpToNearTies) {
    const TopkCase c = GetParam();
    const int64_t H = 2, D = c.D, T = c.T, S = c.S, K = c.K, cap = S + 2;
    std::vector<float> kv = random_floats(H * cap * D, 50, -1.f, 1.f);
    if (c.identical_keys) {
        for (int64_t h = 0; h < H; ++h)
            for (int64_t j = 0; j < cap; ++j)
                std::copy_n(kv.begin(), D, kv.begin() + (h * cap + j) * D);
    }
    Pair q = both(DType::kF32, {T, H * D}, random_floats(T * H * D, 51, -1.f, 1.f));
    Pair k = both(c.dtype, {H, cap, D}, kv);
    const auto rp = reversed_positions(S);
    Pair pos = both_i64({static_cast<int64_t>(rp.size())}, rp);
    Pair sc = both(DType::kF32, {H, T, K}, std::vector<float>(H * T * K, 0.f));
    Pair rows = both_i64({H, T, K}, std::vector<int64_t>(H * T * K, 7));
    Pair ps = both_i64({H, T, K}, std::vector<int64_t>(H * T * K, 7));
    const float scale = 0.3f;
    cpu_.memory_topk(sc.c.view(), rows.c.view(), ps.c.view(), q.c.view(), k.c.view(), pos.c.view(),
                     S, scale);
    gpu_->memory_topk(sc.g.view(), rows.g.view(), ps.g.view(), q.g.view(), k.g.view(), pos.g.view(),
                      S, scale);
    const auto sg = gpu_f32(sc.g), scpu = cpu_f32(sc.c);
    const auto rg = fetch_i64(*gpu_, rows.g.view()), pg = fetch_i64(*gpu_, ps.g.view());
    const auto rc = fetch_i64(cpu_, rows.c.view()), pc = fetch_i64(cpu_, ps.c.view());
    EXPECT_TRUE(all_close(sg, scpu, kScores)) << "sorted scores";
    // One more candidate on the CPU tells whether the K-th is separated from the rest.
    Pair sc1 = both(DType::kF32, {H, T, K + 1}, std::vector<float>(H * T * (K + 1), 0.f));
    Pair r1 = both_i64({H, T, K + 1}, std::vector<int64_t>(H * T * (K + 1), 0));
    Pair p1 = both_i64({H, T, K + 1}, std::vector<int64_t>(H * T * (K + 1), 0));
    cpu_.memory_topk(sc1.c.view(), r1.c.view(), p1.c.view(), q.c.view(), k.c.view(), pos.c.view(),
                     S, scale);
    const auto s1 = cpu_f32(sc1.c);
    const float margin = 1e-4f;
    for (int64_t ht = 0; ht < H * T; ++ht) {
        const int64_t b = ht * K;
        for (int64_t i = 0; i < K; ++i) {
            // Rows and positions agree with each other on the GPU.
            if (rg[b + i] < 0) {
                EXPECT_EQ(pg[b + i], -1);
            } else {
                ASSERT_LT(rg[b + i], S);
                EXPECT_EQ(pg[b + i], rp[rg[b + i]]);
            }
            // Slot i is determined when its score is apart from both neighbours (exact ties are
            // exact on both backends: identical keys give bit-identical scores).
            const float here = s1[ht * (K + 1) + i];
            const float prev = i > 0 ? s1[ht * (K + 1) + i - 1] : kInf;
            const float next = s1[ht * (K + 1) + i + 1];
            const bool exact_ties = c.identical_keys;
            if (exact_ties || (prev - here > margin && here - next > margin) || here == -kInf) {
                EXPECT_EQ(pg[b + i], pc[b + i]) << "row " << ht << " slot " << i;
                EXPECT_EQ(rg[b + i], rc[b + i]) << "row " << ht << " slot " << i;
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaTopk,
                         ::testing::Values(TopkCase{16, 1, 0, 4, DType::kF32},
                                           TopkCase{16, 3, 3, 5, DType::kF32},
                                           TopkCase{100, 1, 700, 1, DType::kBF16},
                                           TopkCase{100, 4, 3000, 128, DType::kBF16},
                                           TopkCase{64, 2, 1000, 5, DType::kF16},
                                           TopkCase{128, 70, 600, 16, DType::kF32},
                                           TopkCase{16, 2, 500, 8, DType::kF32, true},
                                           TopkCase{64, 2, 3000, 2000, DType::kF32},
                                           TopkCase{100, 1, 1500, 4096, DType::kBF16},
                                           TopkCase{100, 1, 300, 128, DType::kBF16, true}),
                         [](const ::testing::TestParamInfo<TopkCase>& i) {
                             std::ostringstream os;
                             os << i.param;
                             return os.str();
                         });

TEST_F(CudaOps, MemoryTopkGivesTheSameResultInSmallScratchChunks) {
    // The launcher scores as many (head, query) rows as its scratch holds: whole heads, or a
    // slice of one head's queries. Chunking must not change a bit, with candidates sorted in
    // shared memory (K = 8) or in the scratch (K = 1100).
    const int64_t H = 3, T = 5, D = 64;
    for (int64_t K : {int64_t{8}, int64_t{1100}}) {
        const int64_t S = K == 8 ? 200 : 1500;
        const int64_t row = kernels::cuda::memory_topk_row_scratch(S, K);
        Buffer q = make_buffer(*gpu_, DType::kF32, {T, H * D}, random_floats(T * H * D, 55));
        Buffer k = make_buffer(*gpu_, DType::kBF16, {H, S, D}, random_floats(H * S * D, 56));
        Buffer pos = make_i64_buffer(*gpu_, {S}, reversed_positions(S));
        std::vector<std::vector<float>> scores;
        std::vector<std::vector<int64_t>> rows;
        for (int64_t scratch_rows : {H * T, 2 * T, int64_t{2}, int64_t{1}}) {
            SCOPED_TRACE(::testing::Message() << "K=" << K << " rows=" << scratch_rows);
            Buffer sc = gpu_->alloc(DType::kF32, {H, T, K}),
                   rw = gpu_->alloc(DType::kI64, {H, T, K}),
                   ps = gpu_->alloc(DType::kI64, {H, T, K});
            Buffer scratch = gpu_->alloc(DType::kF32, {scratch_rows * row});
            kernels::cuda::memory_topk(sc.as<float>(), rw.as<int64_t>(), ps.as<int64_t>(),
                                       q.as<float>(), H * D, k.data(), DType::kBF16, S * D,
                                       pos.as<int64_t>(), H, T, S, D, K, 0.2f, scratch.as<float>(),
                                       scratch_rows * row, gpu_->stream().handle);
            scores.push_back(gpu_f32(sc));
            rows.push_back(fetch_i64(*gpu_, rw.view()));
            EXPECT_EQ(scores.back(), scores.front());
            EXPECT_EQ(rows.back(), rows.front());
        }
        EXPECT_THROW(kernels::cuda::memory_topk(nullptr, nullptr, nullptr, q.as<float>(), H * D,
                                                k.data(), DType::kBF16, S * D, pos.as<int64_t>(), H,
                                                T, S, D, K, 0.2f, nullptr, row - 1, nullptr),
                     Error);
    }
}

TEST_F(CudaOps, TopkOnAnEmptyShardLeavesThePartialAlone) {
    // An mp rank whose shard is empty (its arenas may never have been allocated) takes part
    // in top-k with no candidates: all slots absent, and the partial keeps its local part.
    const int64_t H = 2, T = 3, D = 16, K = 4;
    Buffer q = make_buffer(*gpu_, DType::kF32, {T, H * D}, random_floats(T * H * D, 57));
    Buffer sc = gpu_->alloc(DType::kF32, {H, T, K}), rw = gpu_->alloc(DType::kI64, {H, T, K}),
           ps = gpu_->alloc(DType::kI64, {H, T, K});
    Buffer none;
    gpu_->memory_topk(sc.view(), rw.view(), ps.view(), q.view(), none.view(), none.view(), 0,
                      0.25f);
    EXPECT_EQ(fetch_i64(*gpu_, rw.view()), std::vector<int64_t>(H * T * K, -1));
    EXPECT_EQ(fetch_i64(*gpu_, ps.view()), std::vector<int64_t>(H * T * K, -1));
    EXPECT_TRUE(all_close(gpu_f32(sc), std::vector<float>(H * T * K, -kInf), kExact));
    const auto pv = random_floats(H * T * (D + 2), 58, 0.5f, 1.5f);
    Buffer part = make_buffer(*gpu_, DType::kF32, {H, T, D + 2}, pv);
    Buffer ts = make_buffer(*gpu_, DType::kF32, {H, T}, std::vector<float>(H * T, -kInf));
    Buffer tp = make_i64_buffer(*gpu_, {H, T}, std::vector<int64_t>(H * T, INT64_MAX));
    gpu_->attn_accumulate_selected(part.view(), none.view(), sc.view(), rw.view(), ps.view(),
                                   ts.view(), tp.view());
    EXPECT_TRUE(all_close(gpu_f32(part), pv, kExact));
}

TEST_F(CudaOps, FillUniformIsDeterministicAndInRange) {
    Buffer a = gpu_->alloc(DType::kBF16, {1000}), b = gpu_->alloc(DType::kBF16, {1000});
    gpu_->fill_uniform(a.view(), 5, 0.5f);
    gpu_->fill_uniform(b.view(), 5, 0.5f);
    const auto av = gpu_f32(a);
    EXPECT_EQ(fetch_bytes(*gpu_, a.view()), fetch_bytes(*gpu_, b.view()));
    EXPECT_TRUE(std::all_of(av.begin(), av.end(), [](float x) { return x >= -0.5f && x <= 0.5f; }));
    EXPECT_GT(std::set<float>(av.begin(), av.end()).size(), 100u);
}

TEST_F(CudaOps, TopkThresholdIsExact) {
    const int64_t H = 2, T = 3;
    for (int64_t R : {1, 3}) {
        for (int64_t K : {1, 8, 128}) {
            SCOPED_TRACE(::testing::Message() << "R=" << R << " K=" << K);
            const int64_t n = R * H * T * K;
            // Few distinct scores (many ties), unique positions, some absent candidates and
            // one (h, t) with fewer than K real candidates.
            auto sv = random_floats(n, 60, -2.f, 2.f);
            std::vector<int64_t> pv(n);
            std::iota(pv.begin(), pv.end(), int64_t{0});
            std::mt19937 rng(61);
            std::shuffle(pv.begin(), pv.end(), rng);
            for (int64_t i = 0; i < n; ++i) {
                sv[i] = std::round(sv[i] * 4.f) / 4.f;
                const int64_t ht = (i / K) % (H * T);
                if (i % 5 == 3 || (ht == 4 && i % K != 0)) {
                    sv[i] = -kInf;
                    pv[i] = -1;
                }
            }
            Pair s = both(DType::kF32, {R, H, T, K}, sv);
            Pair p = both_i64({R, H, T, K}, pv);
            Pair ts = both(DType::kF32, {H, T}, std::vector<float>(H * T, 0.f));
            Pair tp = both_i64({H, T}, std::vector<int64_t>(H * T, 0));
            cpu_.topk_threshold(ts.c.view(), tp.c.view(), s.c.view(), p.c.view());
            gpu_->topk_threshold(ts.g.view(), tp.g.view(), s.g.view(), p.g.view());
            EXPECT_TRUE(all_close(gpu_f32(ts.g), cpu_f32(ts.c), kExact));
            EXPECT_EQ(fetch_i64(*gpu_, tp.g.view()), fetch_i64(cpu_, tp.c.view()));
        }
    }
}

TEST_F(CudaOps, AttnAccumulateSelectedMatchesCpu) {
    const int64_t H = 2, T = 3, D = 100;
    for (auto [dt, S, K] : {std::tuple{DType::kF32, int64_t{400}, int64_t{32}},
                            std::tuple{DType::kBF16, int64_t{400}, int64_t{32}},
                            std::tuple{DType::kBF16, int64_t{2500}, int64_t{2100}}}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " K=" << K);
        // Candidates from the CPU (so both backends fold the very same set), a threshold that
        // cuts some of them, and a partial that already holds a local part.
        Pair q = both(DType::kF32, {T, H * D}, random_floats(T * H * D, 70, -2.f, 2.f));
        Pair k = both(dt, {H, S, D}, random_floats(H * S * D, 71, -2.f, 2.f));
        Pair v = both(dt, {H, S, D}, random_floats(H * S * D, 72));
        const auto rp = reversed_positions(S);
        Pair pos = both_i64({S}, rp);
        Buffer sc = cpu_.alloc(DType::kF32, {H, T, K}), rw = cpu_.alloc(DType::kI64, {H, T, K}),
               ps = cpu_.alloc(DType::kI64, {H, T, K});
        cpu_.memory_topk(sc.view(), rw.view(), ps.view(), q.c.view(), k.c.view(), pos.c.view(), S,
                         0.1f);
        const auto scv = cpu_f32(sc);
        const auto rwv = fetch_i64(cpu_, rw.view()), psv = fetch_i64(cpu_, ps.view());
        std::vector<float> thr_s(H * T);
        std::vector<int64_t> thr_p(H * T);
        for (int64_t i = 0; i < H * T; ++i) {
            thr_s[i] = scv[i * K + 2 * K / 3];  // keeps two thirds
            thr_p[i] = psv[i * K + 2 * K / 3];
        }
        Pair s2 = both(DType::kF32, {H, T, K}, scv);
        Pair r2 = both_i64({H, T, K}, rwv);
        Pair p2 = both_i64({H, T, K}, psv);
        Pair ts = both(DType::kF32, {H, T}, thr_s);
        Pair tp = both_i64({H, T}, thr_p);
        auto pv = random_floats(H * T * (D + 2), 73);
        for (int64_t i = 0; i < H * T; ++i) {
            pv[i * (D + 2) + D] = i == 0 ? -kInf : 1.5f;  // row 0 starts empty
            pv[i * (D + 2) + D + 1] = i == 0 ? 0.f : 2.f;
            if (i == 0) std::fill_n(pv.begin(), D, 0.f);
        }
        Pair part = both(DType::kF32, {H, T, D + 2}, pv);
        cpu_.attn_accumulate_selected(part.c.view(), v.c.view(), s2.c.view(), r2.c.view(),
                                      p2.c.view(), ts.c.view(), tp.c.view());
        gpu_->attn_accumulate_selected(part.g.view(), v.g.view(), s2.g.view(), r2.g.view(),
                                       p2.g.view(), ts.g.view(), tp.g.view());
        EXPECT_TRUE(all_close(gpu_f32(part.g), cpu_f32(part.c), {1e-5, 1e-5}));
    }
}

// ---- no per-step allocation --------------------------------------------------------------------

TEST_F(CudaOps, RepeatedStepsDoNotAllocate) {
    const int64_t H = 4, D = 100, T = 1, S = 5000, C = 3200;
    Pair q = both(DType::kF32, {T, H * D}, random_floats(T * H * D, 80));
    Pair k = both(DType::kBF16, {H, S, D}, random_floats(H * S * D, 81));
    Pair part = both(DType::kF32, {H, T, D + 2}, std::vector<float>(H * T * (D + 2), 0.f));
    Pair x = both(DType::kF32, {T, C}, random_floats(T * C, 82));
    Pair w = both(DType::kBF16, {H * D, C}, random_floats(H * D * C, 83));
    Pair pos = both_i64({S}, reversed_positions(S));
    Buffer sc = gpu_->alloc(DType::kF32, {H, T, 16}), rw = gpu_->alloc(DType::kI64, {H, T, 16}),
           ps = gpu_->alloc(DType::kI64, {H, T, 16});
    const int32_t ids[1] = {3};
    Buffer emb = gpu_->alloc(DType::kF32, {T, C});
    auto step = [&] {
        gpu_->embedding(emb.view(), ids, w.g.view(), 0);
        gpu_->matmul(q.g.view(), x.g.view(), w.g.view());
        gpu_->attn_partial_init(part.g.view());
        gpu_->attn_accumulate(part.g.view(), q.g.view(), k.g.view(), k.g.view(), S, 0.1f, kNoMask);
        gpu_->memory_topk(sc.view(), rw.view(), ps.view(), q.g.view(), k.g.view(), pos.g.view(), S,
                          0.1f);
        gpu_->synchronize();
    };
    step();
    const int64_t count = gpu_->allocation_count(), bytes = gpu_->allocated_bytes();
    for (int i = 0; i < 3; ++i) step();
    EXPECT_EQ(gpu_->allocation_count(), count);
    EXPECT_EQ(gpu_->allocated_bytes(), bytes);
    EXPECT_GE(gpu_->peak_allocated_bytes(), bytes);
}

}  // namespace
}  // namespace fot
