// The Backend conformance suite: see backend_conformance.h for what it checks and how.
#include "tests/kernels/backend_conformance.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <tuple>
#include <utility>

#include "runtime/core/status.h"
#include "tests/kernels/backend_reference.h"
#include "tests/kernels/backend_test_util.h"

namespace fot::testing {

// ---- makers, cases and names ---------------------------------------------------------------

BackendMaker cpu_backend_maker() {
    BackendMaker m;
    m.name = "cpu";
    m.make = [](std::string*) -> std::unique_ptr<Backend> {
        return std::make_unique<CpuBackend>();
    };
    m.naive_reference = true;
    // cpu_backend.h: kFast rounds x to bf16, to f16 for f16 weights.
    m.matmul_x_operand = [](DType w, Precision p) {
        if (p == Precision::kExact) return DType::kF32;
        return w == DType::kF16 ? DType::kF16 : DType::kBF16;
    };
    return m;
}

bool ConformanceFixture::start(const BackendMaker& maker, std::string* why_not) {
    maker_ = maker;
    be_ = maker.make(why_not);
    return be_ != nullptr;
}

std::ostream& operator<<(std::ostream& os, const AttnCase& c) {
    return os << precision_name(c.precision) << "_D" << c.D << "_T" << c.T << "_at" << c.at << "_S"
              << c.S_mem << "_" << dtype_name(c.local) << "_" << dtype_name(c.mem) << "_H" << c.H;
}

std::ostream& operator<<(std::ostream& os, const TopkCase& c) {
    return os << "D" << c.D << "_T" << c.T << "_S" << c.S << "_K" << c.K << "_"
              << dtype_name(c.dtype) << (c.identical_keys ? "_ties" : "");
}

namespace {

constexpr Precision kEx = Precision::kExact;
constexpr Precision kFa = Precision::kFast;
constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;
constexpr DType kF16 = DType::kF16;

// The attention cases: the exact ones cover the kernels' paths (decode, key splits, partial
// tiles, window starts) in every memory dtype; the fast ones the tensor-core kernel (bf16
// stores, T > 8), the fast decode path and f32 stores in fast mode.
const std::vector<AttnCase>& attention_cases() {
    static const std::vector<AttnCase> cases = {
        // First token of a document: one query, one key, no memory.
        {kEx, 16, 1, 0, 0, kF32, kF32},
        {kEx, 64, 1, 0, 0, kF32, kF32},
        {kEx, 100, 1, 0, 0, kF32, kF32},
        {kEx, 128, 1, 0, 0, kF32, kF32},
        // Decode over a long memory (the key-split path) in every memory dtype.
        {kEx, 100, 1, 37, 5000, kF32, kBF16, 4},
        {kEx, 128, 1, 37, 5000, kF32, kF16, 4},
        {kEx, 16, 1, 30, 3000, kF32, kF32},
        {kEx, 64, 2, 11, 1, kF32, kBF16},
        // Decode/tiled boundaries, partial tiles, window starts.
        {kEx, 64, 3, 5, 1000, kF32, kF32},
        {kEx, 100, 8, 0, 700, kF32, kBF16},
        {kEx, 100, 9, 0, 700, kF32, kBF16},
        {kEx, 16, 36, 0, 72, kF32, kF32},
        {kEx, 128, 70, 3, 2000, kF32, kF32},
        {kEx, 100, 200, 10, 3000, kF32, kBF16, 3, true},
        {kEx, 100, 200, 10, 300, kF32, kBF16, 3},
        {kEx, 64, 130, 0, 0, kF32, kF16},
        {kEx, 16, 64, 64, 33, kF32, kBF16},
        // Fast: decode (fp32 kernels with fast roundings), with and without key splits.
        {kFa, 16, 1, 0, 0, kBF16, kBF16},
        {kFa, 100, 1, 37, 5000, kBF16, kBF16, 4},
        {kFa, 64, 3, 5, 1000, kF32, kF32},
        {kFa, 128, 8, 30, 700, kBF16, kBF16},
        // Fast decode with f16 stores (rounded to bf16 on the way in) at D 16: 4 pieces per
        // row, so half of each key's 8 lanes read nothing; 1001 keys end in a partial group.
        {kFa, 16, 5, 3, 1001, kF16, kF16},
        // Fast, tensor-core kernel: partial query tiles, key counts off every tile, splits,
        // a causal window of many tiles.
        {kFa, 100, 9, 0, 97, kBF16, kBF16},
        {kFa, 16, 64, 64, 33, kBF16, kBF16},
        {kFa, 64, 64, 0, 700, kBF16, kBF16},
        {kFa, 100, 70, 3, 333, kBF16, kBF16, 3},
        {kFa, 128, 130, 10, 1000, kBF16, kBF16, 2, true},
        {kFa, 128, 130, 10, 150, kBF16, kBF16},
        {kFa, 100, 2048, 0, 150, kBF16, kBF16, 1},  // a whole window: ~12 s in the emulator
        {kFa, 100, 300, 0, 150, kBF16, kBF16, 1},
        // Two m-tiles per warp (128-query blocks; T > 64, D <= 104): key splits over 128-query
        // blocks, D 16 and 64; D 112 takes one m-tile and 14 n-tiles of O (100 takes 13).
        {kFa, 100, 150, 0, 1100, kBF16, kBF16, 2},
        {kFa, 112, 129, 7, 260, kBF16, kBF16, 1},
        {kFa, 64, 200, 5, 400, kBF16, kBF16, 1},
        {kFa, 16, 140, 20, 90, kBF16, kBF16},
        // Fast with f32 stores: the fp32 tiled kernel with the same roundings.
        {kFa, 100, 65, 0, 200, kF32, kF32},
    };
    return cases;
}

const std::vector<TopkCase>& topk_cases() {
    static const std::vector<TopkCase> cases = {
        {16, 1, 0, 4, kF32},
        {16, 3, 3, 5, kF32},
        {100, 1, 700, 1, kBF16},
        {100, 4, 3000, 128, kBF16},
        {64, 2, 1000, 5, kF16},
        {128, 70, 600, 16, kF32},
        {16, 2, 500, 8, kF32, true},
        {64, 2, 3000, 2000, kF32},
        {100, 1, 1500, 4096, kBF16},
        {100, 1, 300, 128, kBF16, true},
        {128, 3, 1001, 16, kF32},  // decode scoring's largest staged rows, a partial warp tile
        // Prefill shapes (more than 8 queries): the CUDA backend's score-rows path (a sample of
        // 320 keys is under 4K) and its filtered path (samples of 64 and 640 keys).
        {100, 40, 2500, 128, kBF16},
        {16, 20, 500, 8, kF32, true},
        {100, 40, 5000, 64, kBF16},
    };
    return cases;
}

}  // namespace

std::vector<std::tuple<BackendMaker, AttnCase>> attention_params(const BackendMaker& m) {
    std::vector<std::tuple<BackendMaker, AttnCase>> out;
    for (const AttnCase& c : attention_cases()) {
        if (!(m.reduced && c.heavy)) out.emplace_back(m, c);
    }
    return out;
}
std::vector<std::tuple<BackendMaker, TopkCase>> topk_params(const BackendMaker& m) {
    std::vector<std::tuple<BackendMaker, TopkCase>> out;
    for (const TopkCase& c : topk_cases()) out.emplace_back(m, c);
    return out;
}

std::string ops_param_name(const ::testing::TestParamInfo<BackendMaker>& info) {
    return info.param.name;
}
std::string attention_param_name(
    const ::testing::TestParamInfo<std::tuple<BackendMaker, AttnCase>>& info) {
    std::ostringstream os;
    os << std::get<0>(info.param).name << "_" << std::get<1>(info.param);
    return os.str();
}
std::string topk_param_name(
    const ::testing::TestParamInfo<std::tuple<BackendMaker, TopkCase>>& info) {
    std::ostringstream os;
    os << std::get<0>(info.param).name << "_" << std::get<1>(info.param);
    return os.str();
}

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int64_t kNoMask = INT64_MAX / 2;

// ---- the tolerance table ---------------------------------------------------------------------
// |got - want| <= abs + rel * |want| elementwise (all_close; infinities must match, NaN never
// passes). Each bound covers two fp32 implementations of the op's arithmetic that differ in
// the order of their sums and in libm ulps; the naive double reference is closer to either
// than they are to each other, so one table serves both references. Apart from the fast
// output (below), none admits a different rounding rule: an unrounded fast q, k or GEMM x,
// TF32 GEMM inputs, a missed bf16 rounding of a store or fp64 rope angles each fail.
constexpr Tol kBitExact{0.0, 0.0};   // copies, gathers, store roundings, fp32 add, maxima
constexpr Tol kSiluMul{1e-7, 1e-6};  // one expf per element: a few ulps
constexpr Tol kNorm{1e-6, 1e-5};     // fp32 sum of up to 3200 squares in any order, then rsqrt
constexpr Tol kRope{1e-5, 1e-5};     // cosf/sinf of fp32 angles up to 1e5 rad: ulps of the result
constexpr Tol kSumExp{0.0, 1e-6};    // log-softmax sum of exp, accumulated in double by contract
constexpr Tol kMerge{1e-6, 1e-5};    // one exp rescale per part
// Exact attention: m is a max of fp32 dot products (D <= 128 terms), l sums up to 5000 fp32
// exponentials, the output is o / l.
constexpr Tol kAttnMax{1e-5, 1e-5};
constexpr Tol kAttnSum{1e-5, 3e-5};
constexpr Tol kAttnOut{2e-5, 2e-5};
constexpr Tol kScores{1e-5, 1e-5};    // top-k scores: one fp32 dot product each
constexpr Tol kSelected{1e-5, 1e-5};  // selected attention: partial over <= K given scores
// Fast attention against the naive rules. q and k are rounded identically everywhere, so m
// (a max of scores) differs by summation order only and pins the bf16 rounding of q and k
// (unrounded operands move it by ~1e-3). l sums fp32 exponentials. The output carries the
// bf16 rounding of each probability, taken against the running max of whichever key block an
// implementation works in: up to 2^-9 of each weight. That freedom is as large as the rounding
// itself, so kFastOut does not pin the probabilities' rounding (an unrounded P.V passes it);
// kernels_cpu_fast_test pins it for CpuBackend's own key blocks.
constexpr Tol kFastMax{2e-5, 2e-5};
constexpr Tol kFastSum{1e-5, 2e-4};
constexpr Tol kFastOut{4e-3, 1e-2};
// A GEMM with K products bounded by amp: fp32 sums in different orders differ by a random
// walk ~ eps * amp * sqrt(K); TF32 inputs or an unrounded fast x would miss this by ~50x.
Tol gemm_tol(int64_t K, double amp) {
    return {3e-6 * amp * std::sqrt(static_cast<double>(K)), 1e-5};
}

std::vector<float> fetch(Backend& b, const Buffer& buf) {
    return fetch_f32(b, buf.view());
}

// Rows [r0, r0 + n) of a [R, ...] view (pointer arithmetic only: valid for device memory).
TensorView rows_of_view(const TensorView& v, int64_t r0, int64_t n) {
    TensorView r = v;
    const int64_t width = v.numel() / v.shape[0];
    r.data = static_cast<char*>(v.data) + r0 * width * dtype_size(v.dtype);
    r.shape[0] = n;
    return r;
}

// x rounded to `dt` (f32: unchanged), as matmul's operand.
std::vector<float> rounded(const std::vector<float>& x, DType dt) {
    return naive::stored_values(dt, x);
}

// Global positions that run against the row order, so ties must use positions, not rows.
std::vector<int64_t> reversed_positions(int64_t S) {
    std::vector<int64_t> p(static_cast<size_t>(std::max<int64_t>(S, 1)));
    for (int64_t i = 0; i < S; ++i) p[i] = 5000 + 3 * (S - i);
    return p;
}

// ---- memory ----------------------------------------------------------------------------------

TEST_P(BackendOps, AllocIsZeroedAndMemoryRoundTrips) {
    for (DType dt : {kF32, kBF16, kF16, DType::kI64}) {
        Buffer z = be().alloc(dt, {3, 5});
        EXPECT_EQ(z.device(), be().device());
        EXPECT_EQ(z.shape(), (Shape{3, 5}));
        EXPECT_EQ(fetch_bytes(be(), z.view()), std::vector<unsigned char>(15 * dtype_size(dt), 0))
            << dtype_name(dt);
    }
    const auto v = random_floats(12, 1);
    Buffer b = make_buffer(be(), kF32, {4, 3}, v);
    EXPECT_TRUE(all_close(fetch(be(), b), v, kBitExact));
    Buffer h = make_buffer(be(), kBF16, {12}, v);
    EXPECT_EQ(fetch_bytes(be(), h.view()), naive::stored_bytes(kBF16, v));
    std::vector<int64_t> iv = {-1, 0, INT64_MAX, int64_t{1} << 40, 7};
    Buffer i = make_i64_buffer(be(), {5}, iv);
    EXPECT_EQ(fetch_i64(be(), i.view()), iv);
    // A partial upload writes its prefix only; a partial download reads a prefix.
    Buffer p = be().alloc(kF32, {6});
    be().upload(p.view(), v.data(), 4 * sizeof(float));
    EXPECT_EQ(fetch(be(), p), (std::vector<float>{v[0], v[1], v[2], v[3], 0.f, 0.f}));
    std::vector<float> two(2, -1.f);
    be().download(two.data(), b.view(), 2 * sizeof(float));
    EXPECT_EQ(two, (std::vector<float>{v[0], v[1]}));
}

TEST_P(BackendOps, CopyRowsHasMemmoveSemantics) {
    const int64_t W = 3;
    const auto v = random_floats(4 * W, 1);
    for (DType dt : {kF32, kBF16}) {
        SCOPED_TRACE(dtype_name(dt));
        const auto sv = naive::stored_values(dt, v);
        // Disjoint: 4 rows into rows [2, 6) of a zeroed [6, W].
        Buffer src = make_buffer(be(), dt, {4, W}, v);
        Buffer dst = be().alloc(dt, {6, W});
        be().copy_rows(dst.view(), 2, src.view(), 4);
        std::vector<float> want(6 * W, 0.f);
        std::copy(sv.begin(), sv.end(), want.begin() + 2 * W);
        EXPECT_TRUE(all_close(fetch(be(), dst), want, kBitExact));
        // Overlapping, forward: rows [0, 3) to rows [1, 4) of the same buffer.
        be().copy_rows(src.view(), 1, first_rows(src.view(), 3), 3);
        std::vector<float> fwd = sv;
        std::copy_backward(sv.begin(), sv.begin() + 3 * W, fwd.begin() + 4 * W);
        EXPECT_TRUE(all_close(fetch(be(), src), fwd, kBitExact));
        // Overlapping, backward: rows [1, 4) to rows [0, 3).
        be().copy_rows(src.view(), 0, rows_of_view(src.view(), 1, 3), 3);
        std::vector<float> back = fwd;
        std::copy(fwd.begin() + W, fwd.end(), back.begin());
        EXPECT_TRUE(all_close(fetch(be(), src), back, kBitExact));
        // Zero rows: nothing moves.
        be().copy_rows(dst.view(), 0, src.view(), 0);
        EXPECT_TRUE(all_close(fetch(be(), dst), want, kBitExact));
    }
}

TEST_P(BackendOps, EveryOpRejectsAnOutputOfAnotherDevice) {
    // backend.h: ops check that views live on this backend's device. Each op runs twice with
    // the same inputs: with an output on this backend it must succeed (so the call is well
    // formed), with the output on another device (host memory labelled so, which a conforming
    // backend never dereferences) it must throw fot::Error and write nothing.
    const Device other = be().device().kind == DeviceKind::kCpu ? Device::cuda(0) : Device::cpu();
    std::vector<float> host(4096, 3.f);
    const int64_t H = 2, T = 3, D = 16, S = 5, K = 2;
    Buffer x = make_buffer(be(), kF32, {T, H * D}, random_floats(T * H * D, 80));
    Buffer w = make_buffer(be(), kF32, {H * D}, random_floats(H * D, 81));
    Buffer wm = make_buffer(be(), kF32, {H * D, H * D}, random_floats(H * D * H * D, 82));
    Buffer kv = make_buffer(be(), kF32, {H, S, D}, random_floats(H * S * D, 83));
    Buffer pos = make_i64_buffer(be(), {S}, {0, 1, 2, 3, 4});
    Buffer part = be().alloc(kF32, {H, T, D + 2});
    be().attn_partial_init(part.view());
    Buffer parts = be().alloc(kF32, {1, H, T, D + 2});
    Buffer scratch_part = be().alloc(kF32, {H, T, D + 2});
    Buffer sc = be().alloc(kF32, {H, T, K}), rw = be().alloc(DType::kI64, {H, T, K}),
           ps = be().alloc(DType::kI64, {H, T, K});
    be().memory_topk(sc.view(), rw.view(), ps.view(), x.view(), kv.view(), pos.view(), S, 0.25f);
    Buffer ts = be().alloc(kF32, {H, T}), tp = be().alloc(DType::kI64, {H, T});
    const std::vector<int32_t> ids = {0, 1, 2};
    struct Op {
        const char* name;
        Shape out_shape;  // f32
        std::function<void(TensorView)> run;
    };
    const std::vector<Op> ops = {
        {"upload", {4}, [&](TensorView o) { be().upload(o, host.data(), 16); }},
        {"copy_rows", {T, H * D}, [&](TensorView o) { be().copy_rows(o, 0, x.view(), 1); }},
        {"embedding",
         {T, H * D},
         [&](TensorView o) { be().embedding(o, ids.data(), wm.view(), 0); }},
        {"rmsnorm", {T, H * D}, [&](TensorView o) { be().rmsnorm(o, x.view(), w.view(), 1e-6f); }},
        {"matmul", {T, H * D}, [&](TensorView o) { be().matmul(o, x.view(), wm.view()); }},
        {"rope", {T, H * D}, [&](TensorView o) { be().rope(o, H, D, 3, 10000.f); }},
        {"silu_mul", {T, H * D}, [&](TensorView o) { be().silu_mul(o, x.view(), x.view()); }},
        {"add", {T, H * D}, [&](TensorView o) { be().add(o, x.view(), x.view()); }},
        {"attn_partial_init", {H, T, D + 2}, [&](TensorView o) { be().attn_partial_init(o); }},
        {"attn_accumulate",
         {H, T, D + 2},
         [&](TensorView o) {
             be().attn_accumulate(o, x.view(), kv.view(), kv.view(), S, 0.25f, kNoMask);
         }},
        {"attn_partial_merge",
         {H, T, D + 2},
         [&](TensorView o) { be().attn_partial_merge(o, parts.view()); }},
        {"attn_partial_finalize",
         {T, H * D},
         [&](TensorView o) { be().attn_partial_finalize(o, part.view()); }},
        {"attn_one_store",
         {T, H * D},
         [&](TensorView o) {
             be().attn_one_store(o, scratch_part.view(), x.view(), kv.view(), kv.view(), S, 0.25f,
                                 kNoMask);
         }},
        {"scatter_heads", {H, S, D}, [&](TensorView o) { be().scatter_heads(o, 0, x.view()); }},
        {"logsoftmax_parts",
         {T, 3},
         [&](TensorView o) { be().logsoftmax_parts(o, x.view(), ids.data(), 0); }},
        {"memory_topk",
         {H, T, K},
         [&](TensorView o) {
             be().memory_topk(o, rw.view(), ps.view(), x.view(), kv.view(), pos.view(), S, 0.25f);
         }},
        {"topk_threshold",
         {H, T},
         [&](TensorView o) {
             be().topk_threshold(o, tp.view(), reshape(sc.view(), {1, H, T, K}),
                                 reshape(ps.view(), {1, H, T, K}));
         }},
        {"attn_accumulate_selected",
         {H, T, D + 2},
         [&](TensorView o) {
             be().attn_accumulate_selected(o, kv.view(), sc.view(), rw.view(), ps.view(), ts.view(),
                                           tp.view());
         }},
    };
    for (const Op& op : ops) {
        Buffer mine = be().alloc(kF32, op.out_shape);
        if (std::string(op.name) == "attn_accumulate" ||
            std::string(op.name) == "attn_accumulate_selected") {
            be().attn_partial_init(mine.view());
        }
        EXPECT_NO_THROW(op.run(mine.view())) << op.name << " on this backend's output";
        TensorView foreign = mine.view();
        foreign.data = host.data();
        foreign.device = other;
        EXPECT_THROW(op.run(foreign), Error) << op.name;
        be().synchronize();
        EXPECT_TRUE(std::all_of(host.begin(), host.end(), [](float v) { return v == 3.f; }))
            << op.name << " wrote to memory of another device";
    }
    std::vector<float> sink(4);
    TensorView foreign = x.view();
    foreign.data = host.data();
    foreign.device = other;
    EXPECT_NO_THROW(be().download(sink.data(), x.view(), 16));
    EXPECT_THROW(be().download(sink.data(), foreign, 16), Error) << "download";
}

// ---- dense ops -------------------------------------------------------------------------------

TEST_P(BackendOps, AddAndSiluMul) {
    for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
        SCOPED_TRACE(n);
        const auto av = random_floats(n, 2, -6.f, 6.f), bv = random_floats(n, 3);
        auto run = [&](Backend& b, bool silu) {
            Buffer a = make_buffer(b, kF32, {n}, av), c = make_buffer(b, kF32, {n}, bv);
            Buffer o = make_buffer(b, kF32, {n}, std::vector<float>(n, 7.f));
            if (silu) {
                b.silu_mul(o.view(), a.view(), c.view());
            } else {
                b.add(o.view(), a.view(), c.view());
            }
            return fetch(b, o);
        };
        EXPECT_TRUE(all_close(run(be(), false), naive::add(av, bv), kBitExact)) << "add";
        const auto want_silu = naive() ? naive::silu_mul(av, bv) : run(cpu(), true);
        EXPECT_TRUE(all_close(run(be(), true), want_silu, kSiluMul)) << "silu_mul";
        // add's out may alias an input (the residual stream adds in place).
        Buffer a = make_buffer(be(), kF32, {n}, av), c = make_buffer(be(), kF32, {n}, bv);
        be().add(a.view(), a.view(), c.view());
        be().add(c.view(), a.view(), c.view());
        EXPECT_TRUE(all_close(fetch(be(), c), naive::add(naive::add(av, bv), bv), kBitExact))
            << "add in place";
    }
}

TEST_P(BackendOps, RmsNorm) {
    for (int64_t T : {1, 7}) {
        for (int64_t C : {64, 100, 3200}) {
            SCOPED_TRACE(::testing::Message() << "T=" << T << " C=" << C);
            const auto xv = random_floats(T * C, 4, -3.f, 3.f);
            const auto wv = random_floats(C, 5, 0.5f, 1.5f);
            auto run = [&](Backend& b) {
                Buffer x = make_buffer(b, kF32, {T, C}, xv), w = make_buffer(b, kF32, {C}, wv);
                Buffer o = b.alloc(kF32, {T, C});
                b.rmsnorm(o.view(), x.view(), w.view(), 1e-6f);
                return fetch(b, o);
            };
            const auto want = naive() ? naive::rmsnorm(xv, wv, T, C, 1e-6f) : run(cpu());
            EXPECT_TRUE(all_close(run(be()), want, kNorm));
        }
    }
}

TEST_P(BackendOps, AddRmsNormIsAddThenRmsNorm) {
    // The fused residual add + norm (one launch on CUDA) against add then rmsnorm on the same
    // backend: the new x and the norm's output (f32 and a GEMM-input dtype) bit for bit.
    for (int64_t T : {1, 7}) {
        for (int64_t C : {64, 3200}) {
            for (DType od : {kF32, kBF16}) {
                SCOPED_TRACE(::testing::Message()
                             << "T=" << T << " C=" << C << " " << dtype_name(od));
                const auto xv = random_floats(T * C, 40, -3.f, 3.f);
                const auto rv = random_floats(T * C, 41, -3.f, 3.f);
                const auto wv = random_floats(C, 42, 0.5f, 1.5f);
                auto run = [&](bool fused) {
                    Buffer x = make_buffer(be(), kF32, {T, C}, xv);
                    Buffer r = make_buffer(be(), kF32, {T, C}, rv);
                    Buffer w = make_buffer(be(), kF32, {C}, wv);
                    Buffer o = be().alloc(od, {T, C});
                    if (fused) {
                        be().add_rmsnorm(o.view(), x.view(), r.view(), w.view(), 1e-6f);
                    } else {
                        be().add(x.view(), x.view(), r.view());
                        be().rmsnorm(o.view(), x.view(), w.view(), 1e-6f);
                    }
                    return std::make_pair(fetch_bytes(be(), x.view()), fetch_bytes(be(), o.view()));
                };
                const auto [x1, o1] = run(true);
                const auto [x0, o0] = run(false);
                EXPECT_EQ(x1, x0);
                EXPECT_EQ(o1, o0);
                Buffer x_in = make_buffer(be(), kF32, {T, C}, xv);
                EXPECT_NE(x1, fetch_bytes(be(), x_in.view()));  // x did change
            }
        }
    }
}

struct GemmShape {
    int64_t T, N, K;
};

// out = x w^T with x rounded as the maker declares for (w's dtype, precision): the reference
// is the exact f32 GEMM of that rounded x (CpuBackend in kExact, or naive).
void check_matmul(Backend& be, CpuBackend& cpu, const BackendMaker& maker, DType wt, Precision prec,
                  GemmShape s, double amp, uint32_t seed) {
    SCOPED_TRACE(::testing::Message() << dtype_name(wt) << " " << precision_name(prec) << " " << s.T
                                      << "x" << s.N << "x" << s.K);
    const auto xv = random_floats(s.T * s.K, seed, -amp, amp);
    const auto wv = random_floats(s.N * s.K, seed + 1);
    be.set_precision(prec);
    Buffer x = make_buffer(be, kF32, {s.T, s.K}, xv), w = make_buffer(be, wt, {s.N, s.K}, wv);
    Buffer o = be.alloc(kF32, {s.T, s.N});
    be.matmul(o.view(), x.view(), w.view());
    be.set_precision(kEx);
    const auto xr = rounded(xv, maker.matmul_x_operand(wt, prec));
    std::vector<float> want;
    if (maker.naive_reference) {
        want = naive::matmul(xr, naive::stored_values(wt, wv), s.T, s.N, s.K);
    } else {
        Buffer xc = make_buffer(cpu, kF32, {s.T, s.K}, xr),
               wc = make_buffer(cpu, wt, {s.N, s.K}, wv);
        Buffer oc = cpu.alloc(kF32, {s.T, s.N});
        cpu.matmul(oc.view(), xc.view(), wc.view());
        want = fetch(cpu, oc);
    }
    EXPECT_TRUE(all_close(fetch(be, o), want, gemm_tol(s.K, amp)));
    EXPECT_EQ(fetch(be, x), xv) << "matmul changed its input x";
}

TEST_P(BackendOps, MatmulF32Weights) {
    // On CUDA T <= 4 with aligned rows runs the decode GEMV (gemv.cu), the rest cuBLAS.
    for (Precision p : {kEx, kFa}) {
        for (GemmShape s :
             {GemmShape{1, 96, 64}, GemmShape{37, 200, 320}, GemmShape{130, 256, 3200},
              GemmShape{3, 131, 3200}, GemmShape{4, 257, 864}, GemmShape{2, 50, 102}}) {
            check_matmul(be(), cpu(), maker(), kF32, p, s, 1.0, 6);
        }
    }
}

TEST_P(BackendOps, MatmulLowPrecisionWeights) {
    for (Precision p : {kEx, kFa}) {
        for (DType wt : {kBF16, kF16}) {
            for (GemmShape s :
                 {GemmShape{1, 96, 64}, GemmShape{19, 130, 3200}, GemmShape{2, 131, 3200},
                  GemmShape{4, 33, 8640}, GemmShape{3, 40, 100}, GemmShape{1, 27, 1600}}) {
                check_matmul(be(), cpu(), maker(), wt, p, s, 4.0, 8);
            }
        }
    }
}

TEST_P(BackendOps, GemmInputsWrittenInTheGemmDtypeAreTheSameBits) {
    // backend.h: rmsnorm, silu_mul and attn_partial_finalize may write gemm_input_dtype(w)
    // (rounded to nearest even), and matmul takes it: the same bits as the f32 round trip.
    const int64_t T = 5, C = 96, H = 2, D = 48, N = 40;
    const auto xv = random_floats(T * C, 120, -2.f, 2.f), nw = random_floats(C, 121, 0.5f, 1.5f);
    const auto pv = random_floats(H * T * (D + 2), 122, 0.5f, 1.5f);
    for (Precision p : {kEx, kFa}) {
        be().set_precision(p);
        for (DType wt : {kBF16, kF16, kF32}) {
            const DType gin = be().gemm_input_dtype(wt);
            SCOPED_TRACE(::testing::Message() << "precision " << precision_name(p) << " w "
                                              << dtype_name(wt) << " gin " << dtype_name(gin));
            if (gin == kF32) continue;
            ASSERT_TRUE(gin == kBF16 || gin == kF16);
            Buffer x = make_buffer(be(), kF32, {T, C}, xv), w = make_buffer(be(), kF32, {C}, nw);
            // Each producer: its f32 output rounded == its output written in gin.
            Buffer o32 = be().alloc(kF32, {T, C}), olp = be().alloc(gin, {T, C});
            be().rmsnorm(o32.view(), x.view(), w.view(), 1e-6f);
            be().rmsnorm(olp.view(), x.view(), w.view(), 1e-6f);
            Buffer rounded = make_buffer(be(), gin, {T, C}, fetch(be(), o32));
            EXPECT_EQ(fetch_bytes(be(), olp.view()), fetch_bytes(be(), rounded.view()))
                << "rmsnorm";
            be().silu_mul(olp.view(), x.view(), x.view());
            Buffer s32 = be().alloc(kF32, {T, C});
            be().silu_mul(s32.view(), x.view(), x.view());
            Buffer srounded = make_buffer(be(), gin, {T, C}, fetch(be(), s32));
            EXPECT_EQ(fetch_bytes(be(), olp.view()), fetch_bytes(be(), srounded.view()))
                << "silu_mul";
            Buffer part = make_buffer(be(), kF32, {H, T, D + 2}, pv);
            Buffer f32o = be().alloc(kF32, {T, H * D}), flp = be().alloc(gin, {T, H * D});
            be().attn_partial_finalize(f32o.view(), part.view());
            be().attn_partial_finalize(flp.view(), part.view());
            Buffer frounded = make_buffer(be(), gin, {T, H * D}, fetch(be(), f32o));
            EXPECT_EQ(fetch_bytes(be(), flp.view()), fetch_bytes(be(), frounded.view()))
                << "attn_partial_finalize";
            // matmul of the rounded input == matmul of the f32 one, for decode and prefill rows.
            for (int64_t rows : {int64_t{1}, T}) {
                Buffer wm = make_buffer(be(), wt, {N, C}, random_floats(N * C, 123));
                Buffer m32 = be().alloc(kF32, {rows, N}), mlp = be().alloc(kF32, {rows, N});
                be().matmul(m32.view(), first_rows(x.view(), rows), wm.view());
                Buffer xr = make_buffer(be(), gin, {T, C}, xv);
                be().matmul(mlp.view(), first_rows(xr.view(), rows), wm.view());
                EXPECT_EQ(fetch_bytes(be(), m32.view()), fetch_bytes(be(), mlp.view()))
                    << "matmul, " << rows << " rows";
            }
            // Any other input dtype is an error, not a silent conversion.
            const DType other = gin == kBF16 ? kF16 : kBF16;
            Buffer xo = make_buffer(be(), other, {T, C}, xv);
            Buffer wm = make_buffer(be(), wt, {N, C}, random_floats(N * C, 124));
            Buffer mo = be().alloc(kF32, {T, N});
            EXPECT_THROW(be().matmul(mo.view(), xo.view(), wm.view()), Error);
        }
    }
    be().set_precision(kEx);
}

TEST_P(BackendOps, MatmulGroupGivesEachMatmulsBits) {
    // matmul_group (q|k|v, gate|up) against one matmul per weight: the same bits, for decode
    // rows (CudaBackend's grouped GEMV) and prefill rows, odd N (matrices start on warp
    // boundaries in the grouped launch), f32 and rounded inputs.
    const int64_t K = 96;
    for (Precision p : {kEx, kFa}) {
        be().set_precision(p);
        for (DType wt : {kBF16, kF32}) {
            for (int64_t T : {int64_t{1}, int64_t{3}, int64_t{6}}) {
                SCOPED_TRACE(::testing::Message()
                             << precision_name(p) << " " << dtype_name(wt) << " T " << T);
                const auto xv = random_floats(T * K, 130 + T, -2.f, 2.f);
                const std::vector<int64_t> Ns = {37, 64, 5};
                std::vector<Buffer> ws, sep, grp;
                for (size_t i = 0; i < Ns.size(); ++i) {
                    ws.push_back(
                        make_buffer(be(), wt, {Ns[i], K}, random_floats(Ns[i] * K, 140 + int(i))));
                    sep.push_back(be().alloc(kF32, {T, Ns[i]}));
                    grp.push_back(be().alloc(kF32, {T, Ns[i]}));
                }
                const DType gin = be().gemm_input_dtype(wt);
                for (DType xd : {kF32, gin}) {
                    Buffer x = make_buffer(be(), xd, {T, K}, xv);
                    for (size_t i = 0; i < Ns.size(); ++i)
                        be().matmul(sep[i].view(), x.view(), ws[i].view());
                    be().matmul_group(x.view(), {{grp[0].view(), ws[0].view()},
                                                 {grp[1].view(), ws[1].view()},
                                                 {grp[2].view(), ws[2].view()}});
                    for (size_t i = 0; i < Ns.size(); ++i) {
                        EXPECT_EQ(fetch_bytes(be(), grp[i].view()),
                                  fetch_bytes(be(), sep[i].view()))
                            << "matrix " << i << " of 3, x " << dtype_name(xd);
                    }
                    be().matmul_group(
                        x.view(), {{grp[1].view(), ws[1].view()}, {grp[2].view(), ws[2].view()}});
                    EXPECT_EQ(fetch_bytes(be(), grp[2].view()), fetch_bytes(be(), sep[2].view()))
                        << "matrix 1 of 2";
                }
            }
        }
    }
    be().set_precision(kEx);
}

TEST_P(BackendOps, MatmulSiluMulIsMatmulGroupThenSiluMul) {
    // matmul_silu_mul (the MLP's gate|up and SiLU-mul; CudaBackend's decode GEMV writes act in
    // its epilogue) against matmul_group then silu_mul: the same bits, for decode and prefill
    // rows, K 96 and 3200 (the GEMV splits K over 4 warps), odd I, act in f32 (also aliasing
    // gate, as the model's f32 path does) and in the GEMM input dtype.
    for (Precision p : {kEx, kFa}) {
        be().set_precision(p);
        for (DType wt : {kBF16, kF32}) {
            const DType gin = be().gemm_input_dtype(wt);
            for (auto [K, T] : {std::pair<int64_t, int64_t>{96, 1}, {96, 3}, {96, 6}, {3200, 2}}) {
                {
                    SCOPED_TRACE(::testing::Message() << precision_name(p) << " " << dtype_name(wt)
                                                      << " K " << K << " T " << T);
                    const int64_t I = 37;
                    // The model's layout (split_rows) on both sides, so that CudaBackend's
                    // prefill rows take its strided-batched GEMM in want and got alike,
                    // whatever addresses the allocator hands out.
                    std::vector<Buffer> wgu = split_rows(be().alloc(wt, {2 * I, K}), 2);
                    for (int i = 0; i < 2; ++i) {
                        const auto wv = random_floats(I * K, 170 + static_cast<uint32_t>(i));
                        std::vector<unsigned char> bytes(wv.size() * dtype_size(wt));
                        convert_from_f32(wv.data(), bytes.data(), wt, wv.size());
                        be().upload(wgu[static_cast<size_t>(i)].view(), bytes.data(),
                                    bytes.size());
                    }
                    const Buffer &wg = wgu[0], &wu = wgu[1];
                    std::vector<Buffer> gu = split_rows(be().alloc(kF32, {2 * T, I}), 2);
                    const Buffer &g = gu[0], &u = gu[1];
                    const auto xv = random_floats(T * K, 172 + T, -2.f, 2.f);
                    // x and act: f32, and the GEMM input dtype when it is another.
                    std::vector<DType> dts = {kF32};
                    if (gin != kF32) dts.push_back(gin);
                    for (DType xd : dts) {
                        Buffer x = make_buffer(be(), xd, {T, K}, xv);
                        be().matmul_group(x.view(), {{g.view(), wg.view()}, {u.view(), wu.view()}});
                        for (DType ad : dts) {
                            Buffer want = be().alloc(ad, {T, I}), got = be().alloc(ad, {T, I});
                            be().silu_mul(want.view(), g.view(), u.view());
                            std::vector<Buffer> gu2 = split_rows(be().alloc(kF32, {2 * T, I}), 2);
                            be().matmul_silu_mul(got.view(), gu2[0].view(), gu2[1].view(),
                                                 x.view(), wg.view(), wu.view());
                            EXPECT_EQ(fetch_bytes(be(), got.view()), fetch_bytes(be(), want.view()))
                                << "x " << dtype_name(xd) << " act " << dtype_name(ad);
                        }
                        std::vector<Buffer> gu2 = split_rows(be().alloc(kF32, {2 * T, I}), 2);
                        const TensorView g2 = gu2[0].view();
                        Buffer want = be().alloc(kF32, {T, I});
                        be().silu_mul(want.view(), g.view(), u.view());
                        be().matmul_silu_mul(g2, g2, gu2[1].view(), x.view(), wg.view(),
                                             wu.view());
                        EXPECT_EQ(fetch_bytes(be(), g2), fetch_bytes(be(), want.view()))
                            << "act aliasing gate, x " << dtype_name(xd);
                    }
                }
            }
        }
    }
    be().set_precision(kEx);
}

TEST_P(BackendOps, MatmulAddRmsNormIsMatmulThenAddRmsNorm) {
    // matmul_add_rmsnorm (o_proj / down_proj and the norm after them; CudaBackend's decode
    // GEMV adds and norms in its last block) against matmul then add_rmsnorm: proj, the new x
    // and xn bit for bit. Decode rows (T <= 4) and prefill rows (6), K 96 with C 300 (19 GEMV
    // blocks) and K 3200 with C 64 (K split over 4 warps, 16 blocks), a and xn in f32 and in
    // the GEMM input dtype (the model's xn feeds the next GEMM). Every case launches again on the
    // one ticket, so a ticket left un-armed by the previous launch would leave x and xn unwritten
    // here.
    for (Precision p : {kEx, kFa}) {
        be().set_precision(p);
        for (DType wt : {kBF16, kF32}) {
            const DType gin = be().gemm_input_dtype(wt);
            for (auto [K, C, T] : {std::tuple<int64_t, int64_t, int64_t>{96, 300, 1},
                                   {96, 300, 4},
                                   {96, 300, 6},
                                   {3200, 64, 1},
                                   {3200, 64, 3}}) {
                SCOPED_TRACE(::testing::Message() << precision_name(p) << " " << dtype_name(wt)
                                                  << " K " << K << " C " << C << " T " << T);
                Buffer w = make_buffer(be(), wt, {C, K}, random_floats(C * K, 180));
                Buffer nw = make_buffer(be(), kF32, {C}, random_floats(C, 181, 0.5f, 1.5f));
                const auto av = random_floats(T * K, 182 + T, -2.f, 2.f);
                const auto xv = random_floats(T * C, 183, -3.f, 3.f);
                std::vector<DType> dts = {kF32};
                if (gin != kF32) dts.push_back(gin);
                for (DType ad : dts) {
                    Buffer a = make_buffer(be(), ad, {T, K}, av);
                    for (DType od : dts) {
                        auto run = [&](bool fused) {
                            Buffer x = make_buffer(be(), kF32, {T, C}, xv);
                            Buffer proj = be().alloc(kF32, {T, C});
                            Buffer xn = be().alloc(od, {T, C});
                            if (fused) {
                                be().matmul_add_rmsnorm(xn.view(), x.view(), proj.view(), a.view(),
                                                        w.view(), nw.view(), 1e-6f);
                            } else {
                                be().matmul(proj.view(), a.view(), w.view());
                                be().add_rmsnorm(xn.view(), x.view(), proj.view(), nw.view(),
                                                 1e-6f);
                            }
                            return std::vector<std::vector<unsigned char>>{
                                fetch_bytes(be(), proj.view()), fetch_bytes(be(), x.view()),
                                fetch_bytes(be(), xn.view())};
                        };
                        const auto got = run(true), want = run(false);
                        const char* what[] = {"proj", "x", "xn"};
                        for (int i = 0; i < 3; ++i) {
                            EXPECT_EQ(got[i], want[i])
                                << what[i] << ", a " << dtype_name(ad) << ", xn " << dtype_name(od);
                        }
                        Buffer x_in = make_buffer(be(), kF32, {T, C}, xv);
                        EXPECT_NE(got[1], fetch_bytes(be(), x_in.view())) << "x did not change";
                    }
                }
            }
        }
    }
    be().set_precision(kEx);
}

TEST_P(BackendOps, MatmulGroupOfSplitRowsMatchesEachMatmul) {
    // The model's layout (split_rows: weights back to back, outputs one window of rows apart):
    // CudaBackend runs prefill rows as one strided-batched GEMM, whose sums may run in another
    // order than matmul's; decode rows keep the grouped GEMV (bits: the test above).
    const int64_t K = 96, N = 40, rows = 48;
    for (Precision p : {kEx, kFa}) {
        be().set_precision(p);
        for (DType wt : {kBF16, kF32}) {
            for (int64_t parts : {int64_t{3}, int64_t{2}}) {
                std::vector<Buffer> ws = split_rows(be().alloc(wt, {parts * N, K}), parts);
                std::vector<Buffer> sep,
                    grp = split_rows(be().alloc(kF32, {parts * rows, N}), parts);
                for (int64_t i = 0; i < parts; ++i) {
                    const auto wv = random_floats(N * K, 150 + static_cast<uint32_t>(i));
                    std::vector<unsigned char> bytes(wv.size() * dtype_size(wt));
                    convert_from_f32(wv.data(), bytes.data(), wt, wv.size());
                    be().upload(ws[static_cast<size_t>(i)].view(), bytes.data(), bytes.size());
                }
                for (int64_t T : {int64_t{1}, int64_t{6}, int64_t{37}}) {
                    SCOPED_TRACE(::testing::Message() << precision_name(p) << " " << dtype_name(wt)
                                                      << " parts " << parts << " T " << T);
                    const auto xv = random_floats(T * K, 160 + T, -2.f, 2.f);
                    for (DType xd : {kF32, be().gemm_input_dtype(wt)}) {
                        Buffer x = make_buffer(be(), xd, {T, K}, xv);
                        std::vector<TensorView> outs;
                        for (const Buffer& g : grp) {
                            TensorView v = g.view();
                            v.shape = {T, N};  // the first T of the part's rows
                            outs.push_back(v);
                        }
                        sep.clear();
                        for (int64_t i = 0; i < parts; ++i) {
                            sep.push_back(be().alloc(kF32, {T, N}));
                            be().matmul(sep.back().view(), x.view(),
                                        ws[static_cast<size_t>(i)].view());
                        }
                        if (parts == 3) {
                            be().matmul_group(x.view(), {{outs[0], ws[0].view()},
                                                         {outs[1], ws[1].view()},
                                                         {outs[2], ws[2].view()}});
                        } else {
                            be().matmul_group(x.view(),
                                              {{outs[0], ws[0].view()}, {outs[1], ws[1].view()}});
                        }
                        for (int64_t i = 0; i < parts; ++i) {
                            EXPECT_TRUE(all_close(fetch_f32(be(), outs[static_cast<size_t>(i)]),
                                                  fetch(be(), sep[static_cast<size_t>(i)]),
                                                  gemm_tol(K, 2.0)))
                                << "matrix " << i << ", x " << dtype_name(xd);
                        }
                    }
                }
            }
        }
    }
    be().set_precision(kEx);
}

TEST_P(BackendOps, RopeRotateHalf) {
    const int64_t H = 3;
    for (int64_t D : {16, 64, 100, 128}) {
        for (int64_t T : {1, 5}) {
            for (int64_t pos : {int64_t{0}, int64_t{1000}, int64_t{100000}}) {
                SCOPED_TRACE(::testing::Message() << "D=" << D << " T=" << T << " pos=" << pos);
                const int64_t W = H * D + 3;  // columns past H*D must stay untouched
                const auto xv = random_floats(T * W, 10, -2.f, 2.f);
                auto run = [&](Backend& b) {
                    Buffer x = make_buffer(b, kF32, {T, W}, xv);
                    b.rope(x.view(), H, D, pos, 10000.f);
                    return fetch(b, x);
                };
                const auto want = naive() ? naive::rope(xv, T, W, H, D, pos, 10000.f) : run(cpu());
                const auto got = run(be());
                EXPECT_TRUE(all_close(got, want, kRope));
                for (int64_t t = 0; t < T; ++t) {
                    for (int64_t c = H * D; c < W; ++c) ASSERT_EQ(got[t * W + c], xv[t * W + c]);
                }
                if (pos == 0) {
                    // Position 0 turns nothing (memory keys are stored "as if first").
                    EXPECT_TRUE(all_close(std::vector<float>(got.begin(), got.begin() + W),
                                          std::vector<float>(xv.begin(), xv.begin() + W),
                                          kBitExact));
                }
            }
        }
    }
}

TEST_P(BackendOps, EmbeddingGathersThisShardAndZerosTheRest) {
    const int64_t rows = 50, C = 96, row_begin = 100;
    const std::vector<int32_t> ids = {99, 100, 149, 150, 120, 0, 131, -1};
    const int64_t T = static_cast<int64_t>(ids.size());
    for (DType dt : {kF32, kBF16, kF16}) {
        SCOPED_TRACE(dtype_name(dt));
        const auto tv = random_floats(rows * C, 11);
        Buffer table = make_buffer(be(), dt, {rows, C}, tv);
        Buffer o = make_buffer(be(), kF32, {T, C}, std::vector<float>(T * C, 7.f));
        be().embedding(o.view(), ids.data(), table.view(), row_begin);
        const auto want = naive::embedding(ids, naive::stored_values(dt, tv), rows, C, row_begin);
        EXPECT_TRUE(all_close(fetch(be(), o), want, kBitExact));
    }
}

float from_bits(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

TEST_P(BackendOps, ScatterHeadsRoundsToNearestEven) {
    const int64_t H = 3, D = 10, cap = 12, at = 4, T = 5, stride = H * D + 2;
    auto xv = random_floats(T * stride, 12, -300.f, 300.f);
    // Exact bf16 ties (both directions of round-half-even), f16 ties, f16 overflow and
    // subnormals, signed zero, the largest value that stays finite in f16.
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
    for (DType dt : {kF32, kBF16, kF16}) {
        SCOPED_TRACE(dtype_name(dt));
        Buffer x = make_buffer(be(), kF32, {T, stride}, xv);
        Buffer st = make_buffer(be(), dt, {H, cap, D}, random_floats(H * cap * D, 13));
        auto want = fetch_bytes(be(), st.view());
        be().scatter_heads(st.view(), at, x.view());
        const size_t es = dtype_size(dt);
        for (int64_t t = 0; t < T; ++t) {
            for (int64_t h = 0; h < H; ++h) {
                const std::vector<float> row(xv.begin() + t * stride + h * D,
                                             xv.begin() + t * stride + (h + 1) * D);
                const auto bytes = naive::stored_bytes(dt, row);
                std::copy(bytes.begin(), bytes.end(), want.begin() + ((h * cap + at + t) * D) * es);
            }
        }
        EXPECT_EQ(fetch_bytes(be(), st.view()), want);
    }
}

TEST_P(BackendOps, RopeStoreKvIsRopeThenScatterHeads) {
    // The fused local-cache write (one launch on CUDA) against the four ops it replaces, on the
    // same backend: q and both stores bit for bit, rows outside [at, at + T) untouched. Rows of
    // q/k/v wider than H*D (columns past it stay as they were in q).
    const int64_t H = 3, cap = 9;
    for (int64_t D : {16, 100, 128}) {
        for (int64_t T : {1, 4}) {
            for (bool rotate : {true, false}) {
                for (DType dt : {kF32, kBF16, kF16}) {
                    const int64_t at = cap - T - 1, W = H * D + 2;
                    SCOPED_TRACE(::testing::Message() << "D=" << D << " T=" << T << " rotate="
                                                      << rotate << " " << dtype_name(dt));
                    const auto qv = random_floats(T * W, 31, -2.f, 2.f);
                    const auto kv = random_floats(T * W, 32, -2.f, 2.f);
                    const auto vv = random_floats(T * W, 33, -2.f, 2.f);
                    const auto sv = random_floats(H * cap * D, 34);
                    auto run = [&](bool fused) {
                        Buffer q = make_buffer(be(), kF32, {T, W}, qv);
                        Buffer k = make_buffer(be(), kF32, {T, W}, kv);
                        Buffer v = make_buffer(be(), kF32, {T, W}, vv);
                        Buffer ks = make_buffer(be(), dt, {H, cap, D}, sv);
                        Buffer vs = make_buffer(be(), dt, {H, cap, D}, sv);
                        if (fused) {
                            be().rope_store_kv(q.view(), k.view(), v.view(), ks.view(), vs.view(),
                                               at, 10000.f, rotate);
                        } else {
                            if (rotate) {
                                be().rope(q.view(), H, D, at, 10000.f);
                                be().rope(k.view(), H, D, at, 10000.f);
                            }
                            be().scatter_heads(ks.view(), at, k.view());
                            be().scatter_heads(vs.view(), at, v.view());
                        }
                        return std::make_tuple(fetch_bytes(be(), q.view()),
                                               fetch_bytes(be(), ks.view()),
                                               fetch_bytes(be(), vs.view()));
                    };
                    const auto [q1, ks1, vs1] = run(true);
                    const auto [q0, ks0, vs0] = run(false);
                    EXPECT_EQ(q1, q0);
                    EXPECT_EQ(ks1, ks0);
                    EXPECT_EQ(vs1, vs0);
                    // The four ops really moved something (the comparison is not vacuous).
                    Buffer s0 = make_buffer(be(), dt, {H, cap, D}, sv);
                    EXPECT_NE(ks1, fetch_bytes(be(), s0.view()));
                    Buffer q_in = make_buffer(be(), kF32, {T, W}, qv);
                    if (rotate) {
                        EXPECT_NE(q1, fetch_bytes(be(), q_in.view()));
                    }
                }
            }
        }
    }
}

TEST_P(BackendOps, LogSoftmaxPartsOfAVocabularySlice) {
    const int64_t T = 5, V = 1000, vbegin = 3000;
    const auto lv = random_floats(T * V, 15, -20.f, 20.f);
    const std::vector<int32_t> targets = {3000, 3999, 2999, 4000, -1};  // in, in, out, out, none
    auto run = [&](Backend& b) {
        Buffer lg = make_buffer(b, kF32, {T, V}, lv);
        Buffer parts = make_buffer(b, kF32, {T, 3}, std::vector<float>(3 * T, 7.f));
        b.logsoftmax_parts(parts.view(), lg.view(), targets.data(), vbegin);
        return fetch(b, parts);
    };
    const auto got = run(be());
    const auto exact = naive::logsoftmax_parts(lv, T, V, targets, vbegin);
    const auto want = naive() ? exact : run(cpu());
    for (int64_t t = 0; t < T; ++t) {
        SCOPED_TRACE(t);
        EXPECT_EQ(got[3 * t], exact[3 * t]) << "row max";
        EXPECT_EQ(got[3 * t + 2], exact[3 * t + 2]) << "target logit";
        EXPECT_TRUE(all_close({got[3 * t + 1]}, {want[3 * t + 1]}, kSumExp)) << "sum of exp";
    }
    EXPECT_EQ(got[2], lv[0]);
    EXPECT_EQ(got[5], lv[V + 999]);
    EXPECT_EQ(got[8], 0.f);
}

// ---- attention -------------------------------------------------------------------------------

TEST_P(BackendOps, AttentionPartialInitIsTheEmptyPartial) {
    const int64_t H = 3, T = 5, D = 100;
    Buffer part = make_buffer(be(), kF32, {H, T, D + 2}, random_floats(H * T * (D + 2), 16));
    be().attn_partial_init(part.view());
    EXPECT_TRUE(all_close(fetch(be(), part), naive::Partial(H, T, D).floats(), kBitExact));
}

TEST_P(BackendOps, AttnOneStoreIsInitAccumulateFinalize) {
    // backend.h: the bits of the three ops, whatever the scratch partial holds (CudaBackend runs
    // decode shapes as one decode launch that writes the output itself, merging its key splits
    // in its last block; prefill shapes in `fast` over bf16 stores with one key split as one
    // tensor-core launch that starts empty and writes the output). Decode and prefill rows,
    // causal (the window's last T queries) and not, key counts that split (S 1100 and 600: 3
    // and 2 decode chunks of at most 512 keys; S 700 at T 150: 2 tensor-core splits, the three
    // ops) and that do not, queries that see no key (causal, T > S), every store dtype, f32,
    // f16 and rounded outputs, both precisions.
    const int64_t H = 2;
    struct Case {
        Precision p;
        int64_t D, T, S;
        DType store;
    };
    const std::vector<Case> cases = {
        {kEx, 16, 1, 37, kF32},    {kFa, 64, 3, 300, kBF16},    {kFa, 100, 8, 1100, kBF16},
        {kEx, 100, 8, 600, kF32},  {kEx, 128, 2, 600, kF16},    {kFa, 100, 12, 200, kBF16},
        {kEx, 64, 1, 1, kF32},     {kFa, 100, 130, 300, kBF16}, {kFa, 64, 150, 700, kBF16},
        {kFa, 128, 70, 90, kBF16}, {kFa, 64, 100, 40, kBF16}};  // causal: 60 rows see no key
    for (const Case& c : cases) {
        be().set_precision(c.p);
        const int64_t cap = c.S + 5, HD = H * c.D;
        const float scale = 1.f / std::sqrt(static_cast<float>(c.D));
        Buffer q = make_buffer(be(), kF32, {c.T, HD},
                               random_floats(c.T * HD, 210 + uint32_t(c.D), -2.f, 2.f));
        Buffer k = make_buffer(be(), c.store, {H, cap, c.D}, random_floats(H * cap * c.D, 211));
        Buffer v = make_buffer(be(), c.store, {H, cap, c.D}, random_floats(H * cap * c.D, 212));
        for (int variant = 0; variant < 3; ++variant) {
            const bool causal = variant != 1;
            const DType od = variant == 0   ? kF32
                             : variant == 1 ? be().gemm_input_dtype(kBF16)
                                            : kF16;
            SCOPED_TRACE(::testing::Message()
                         << precision_name(c.p) << " D " << c.D << " T " << c.T << " S " << c.S
                         << " " << dtype_name(c.store) << (causal ? " causal" : "") << " out "
                         << dtype_name(od));
            const int64_t off = causal ? c.S - c.T : kNoMask;
            Buffer part = be().alloc(kF32, {H, c.T, c.D + 2});
            Buffer want = be().alloc(od, {c.T, HD}), got = be().alloc(od, {c.T, HD});
            be().attn_partial_init(part.view());
            be().attn_accumulate(part.view(), q.view(), k.view(), v.view(), c.S, scale, off);
            be().attn_partial_finalize(want.view(), part.view());
            Buffer junk = make_buffer(be(), kF32, {H, c.T, c.D + 2},
                                      random_floats(H * c.T * (c.D + 2), 213, -1e3f, 1e3f));
            be().attn_one_store(got.view(), junk.view(), q.view(), k.view(), v.view(), c.S, scale,
                                off);
            EXPECT_EQ(fetch_bytes(be(), got.view()), fetch_bytes(be(), want.view()));
            // Not vacuous: the output is not all zeros.
            const auto w = fetch_f32(be(), want.view());
            EXPECT_TRUE(std::any_of(w.begin(), w.end(), [](float x) { return x != 0.f; }));
        }
    }
    be().set_precision(kEx);
}

TEST_P(BackendOps, AttentionQueriesThatSeeNoKeyFinalizeToZero) {
    // causal_offset < 0: query t sees keys j <= t - 10, so the first 10 queries see none.
    const int64_t H = 2, D = 64, T = 70, S = 30;
    const auto qv = random_floats(T * H * D, 30), kv = random_floats(H * S * D, 31),
               vv = random_floats(H * S * D, 32);
    auto run = [&](Backend& b) {
        Buffer q = make_buffer(b, kF32, {T, H * D}, qv), k = make_buffer(b, kF32, {H, S, D}, kv),
               v = make_buffer(b, kF32, {H, S, D}, vv);
        Buffer part = b.alloc(kF32, {H, T, D + 2});
        Buffer out = make_buffer(b, kF32, {T, H * D}, std::vector<float>(T * H * D, 9.f));
        b.attn_partial_init(part.view());
        b.attn_accumulate(part.view(), q.view(), k.view(), v.view(), S, 0.125f, -10);
        b.attn_partial_finalize(out.view(), part.view());
        return fetch(b, out);
    };
    std::vector<float> want;
    if (naive()) {
        naive::Partial p(H, T, D);
        naive::attn_fold(p, qv, H * D, kv, vv, S, S, 0.125f, -10, false);
        want = p.finalized();
    } else {
        want = run(cpu());
    }
    const auto got = run(be());
    EXPECT_TRUE(all_close(got, want, kAttnOut));
    for (int64_t i = 0; i < 10 * H * D; ++i) ASSERT_EQ(got[i], 0.f) << i;
}

TEST_P(BackendOps, AttentionMergeInOrderAndInPlace) {
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
        auto run = [&](Backend& b, bool in_place) {
            Buffer parts = make_buffer(b, kF32, {R, H, T, D + 2}, pv);
            if (in_place) {
                // out aliasing parts[0], as the model merges after the all-gather.
                TensorView p0 = reshape(parts.view(), {H, T, D + 2});
                b.attn_partial_merge(p0, parts.view());
                return fetch_f32(b, p0);
            }
            Buffer out =
                make_buffer(b, kF32, {H, T, D + 2}, std::vector<float>(rows * (D + 2), 3.f));
            b.attn_partial_merge(out.view(), parts.view());
            return fetch(b, out);
        };
        const auto want = naive() ? naive::merge(pv, R, H, T, D).floats() : run(cpu(), false);
        EXPECT_TRUE(all_close(run(be(), false), want, kMerge));
        EXPECT_TRUE(all_close(run(be(), true), want, kMerge)) << "in place";
    }
}

// The model's sequence for one AttnCase, on one backend: init, local causal part over keys
// [0, at + T), memory part without mask; returns the partial and the finalized output.
struct AttnData {
    AttnCase c;
    int64_t S_loc, cap_loc, cap_mem, q_stride;
    float scale;
    std::vector<float> q, kl, vl, km, vm;

    explicit AttnData(const AttnCase& cs) : c(cs) {
        const int64_t H = c.H, D = c.D, T = c.T;
        S_loc = c.at + c.T;
        cap_loc = S_loc + 3;  // head strides larger than the keys used
        cap_mem = c.S_mem + 5;
        q_stride = H * D + 4;  // queries are a column range of a wider row
        scale = 1.0f / std::sqrt(static_cast<float>(D));
        q = random_floats(T * q_stride, 20, -2.f, 2.f);
        kl = random_floats(H * cap_loc * D, 21, -2.f, 2.f);
        vl = random_floats(H * cap_loc * D, 22);
        km = random_floats(H * cap_mem * D, 23, -2.f, 2.f);
        vm = random_floats(H * cap_mem * D, 24);
    }

    std::pair<std::vector<float>, std::vector<float>> run(Backend& b) const {
        const int64_t H = c.H, D = c.D, T = c.T;
        const Precision saved = b.precision();
        b.set_precision(c.precision);
        Buffer qb = make_buffer(b, kF32, {T, q_stride}, q);
        Buffer klb = make_buffer(b, c.local, {H, cap_loc, D}, kl);
        Buffer vlb = make_buffer(b, c.local, {H, cap_loc, D}, vl);
        Buffer kmb = make_buffer(b, c.mem, {H, cap_mem, D}, km);
        Buffer vmb = make_buffer(b, c.mem, {H, cap_mem, D}, vm);
        Buffer part = make_buffer(b, kF32, {H, T, D + 2}, std::vector<float>(H * T * (D + 2), 5.f));
        Buffer out = make_buffer(b, kF32, {T, H * D}, std::vector<float>(T * H * D, 9.f));
        b.attn_partial_init(part.view());
        b.attn_accumulate(part.view(), qb.view(), klb.view(), vlb.view(), S_loc, scale, c.at);
        b.attn_accumulate(part.view(), qb.view(), kmb.view(), vmb.view(), c.S_mem, scale, kNoMask);
        b.attn_partial_finalize(out.view(), part.view());
        b.set_precision(saved);
        return {fetch(b, part), fetch(b, out)};
    }

    naive::Partial naive_partial() const {
        const bool fast = c.precision == kFa;
        naive::Partial p(c.H, c.T, c.D);
        naive::attn_fold(p, q, q_stride, naive::stored_values(c.local, kl),
                         naive::stored_values(c.local, vl), cap_loc, S_loc, scale, c.at, fast);
        naive::attn_fold(p, q, q_stride, naive::stored_values(c.mem, km),
                         naive::stored_values(c.mem, vm), cap_mem, c.S_mem, scale, kNoMask, fast);
        return p;
    }
};

std::vector<float> stat(const std::vector<float>& part, int64_t rows, int64_t D, int64_t which) {
    std::vector<float> out;
    for (int64_t r = 0; r < rows; ++r) out.push_back(part[r * (D + 2) + D + which]);
    return out;
}

// got (partial, output) against want (m, l, output) with the case's tolerances.
::testing::AssertionResult attention_close(
    const AttnCase& c, const std::pair<std::vector<float>, std::vector<float>>& got,
    const std::vector<float>& want_m, const std::vector<float>& want_l,
    const std::vector<float>& want_out) {
    const int64_t rows = c.H * c.T;
    const bool fast = c.precision == kFa;
    if (auto r = all_close(stat(got.first, rows, c.D, 0), want_m, fast ? kFastMax : kAttnMax); !r)
        return r << " (running max m)";
    if (auto r = all_close(stat(got.first, rows, c.D, 1), want_l, fast ? kFastSum : kAttnSum); !r)
        return r << " (sum of exponentials l)";
    if (auto r = all_close(got.second, want_out, fast ? kFastOut : kAttnOut); !r)
        return r << " (normalised output)";
    return ::testing::AssertionSuccess();
}

}  // namespace

::testing::AssertionResult attention_matches_naive(Backend& b, const AttnCase& c) {
    const AttnData data(c);
    const naive::Partial p = data.naive_partial();
    return attention_close(c, data.run(b), p.m(), p.l(), p.finalized());
}

namespace {

TEST_P(BackendAttention, ModelSequence) {
    const AttnCase c = std::get<1>(GetParam());
    // Fast: every backend against the naive rules (see the tolerance table); exact: CpuBackend
    // against naive, other backends against CpuBackend.
    if (naive() || c.precision == kFa) {
        EXPECT_TRUE(attention_matches_naive(be(), c));
        return;
    }
    const AttnData data(c);
    const auto want = data.run(cpu());
    const int64_t rows = c.H * c.T;
    EXPECT_TRUE(attention_close(c, data.run(be()), stat(want.first, rows, c.D, 0),
                                stat(want.first, rows, c.D, 1), want.second));
}

// ---- top-k -----------------------------------------------------------------------------------

TEST_P(BackendTopk, MatchesTheReferenceUpToNearTies) {
    const TopkCase c = std::get<1>(GetParam());
    const int64_t H = 2, D = c.D, T = c.T, S = c.S, K = c.K, cap = S + 2;
    std::vector<float> kv = random_floats(H * cap * D, 50, -1.f, 1.f);
    if (c.identical_keys) {
        for (int64_t h = 0; h < H; ++h)
            for (int64_t j = 0; j < cap; ++j)
                std::copy_n(kv.begin(), D, kv.begin() + (h * cap + j) * D);
    }
    const auto qv = random_floats(T * H * D, 51, -1.f, 1.f);
    const auto rp = reversed_positions(S);
    const float scale = 0.3f;
    // The K (or K + 1) best on a backend: scores, rows, positions [H, T, K].
    struct Top {
        std::vector<float> s;
        std::vector<int64_t> r, p;
    };
    auto run = [&](Backend& b, int64_t k) {
        Buffer q = make_buffer(b, kF32, {T, H * D}, qv),
               keys = make_buffer(b, c.dtype, {H, cap, D}, kv);
        Buffer pos = make_i64_buffer(b, {static_cast<int64_t>(rp.size())}, rp);
        Buffer sc = make_buffer(b, kF32, {H, T, k}, std::vector<float>(H * T * k, 0.f));
        Buffer rows = make_i64_buffer(b, {H, T, k}, std::vector<int64_t>(H * T * k, 7));
        Buffer ps = make_i64_buffer(b, {H, T, k}, std::vector<int64_t>(H * T * k, 7));
        b.memory_topk(sc.view(), rows.view(), ps.view(), q.view(), keys.view(), pos.view(), S,
                      scale);
        return Top{fetch(b, sc), fetch_i64(b, rows.view()), fetch_i64(b, ps.view())};
    };
    const Top got = run(be(), K);
    // The reference's K + 1 best tell whether the K-th is apart from the rest.
    Top ref;
    if (naive()) {
        const auto ranked = naive::topk_ranked(qv, H * D, naive::stored_values(c.dtype, kv), cap,
                                               rp, H, T, S, D, scale);
        for (const auto& cands : ranked) {
            for (int64_t i = 0; i <= K; ++i) {
                const bool real = i < static_cast<int64_t>(cands.size());
                ref.s.push_back(real ? static_cast<float>(cands[i].score) : -kInf);
                ref.r.push_back(real ? cands[i].row : -1);
                ref.p.push_back(real ? cands[i].pos : -1);
            }
        }
    } else {
        ref = run(cpu(), K + 1);
    }
    std::vector<float> want_s;
    for (int64_t ht = 0; ht < H * T; ++ht) {
        for (int64_t i = 0; i < K; ++i) want_s.push_back(ref.s[ht * (K + 1) + i]);
    }
    EXPECT_TRUE(all_close(got.s, want_s, kScores)) << "sorted scores";
    const float margin = 1e-4f;
    for (int64_t ht = 0; ht < H * T; ++ht) {
        const int64_t b = ht * K;
        for (int64_t i = 0; i < K; ++i) {
            // Rows and positions agree with each other; absent slots are (-inf, -1, -1).
            if (got.r[b + i] < 0) {
                EXPECT_EQ(got.r[b + i], -1);
                EXPECT_EQ(got.p[b + i], -1);
                EXPECT_EQ(got.s[b + i], -kInf);
            } else {
                ASSERT_LT(got.r[b + i], S);
                EXPECT_EQ(got.p[b + i], rp[got.r[b + i]]);
            }
            // Best first: (score desc, position asc).
            if (i > 0 && got.r[b + i] >= 0) {
                EXPECT_TRUE(got.s[b + i - 1] > got.s[b + i] ||
                            (got.s[b + i - 1] == got.s[b + i] && got.p[b + i - 1] < got.p[b + i]))
                    << "row " << ht << " slot " << i << " out of order";
            }
            // Slot i is determined when its score is apart from both neighbours (identical
            // keys give bit-identical scores on every backend: ties are exact).
            const float here = ref.s[ht * (K + 1) + i];
            const float prev = i > 0 ? ref.s[ht * (K + 1) + i - 1] : kInf;
            const float next = ref.s[ht * (K + 1) + i + 1];
            if (c.identical_keys || (prev - here > margin && here - next > margin) ||
                here == -kInf) {
                EXPECT_EQ(got.p[b + i], ref.p[ht * (K + 1) + i]) << "row " << ht << " slot " << i;
                EXPECT_EQ(got.r[b + i], ref.r[ht * (K + 1) + i]) << "row " << ht << " slot " << i;
            }
        }
    }
}

TEST_P(BackendOps, TopkOnAnEmptyShardLeavesThePartialAlone) {
    // An mp rank whose shard holds no entry yet (S = 0; MemoryStore keeps one-row arenas, so
    // the views are well formed) takes part in top-k with no candidates: all slots absent,
    // and the partial keeps its local part. (CudaBackend also takes unallocated arenas:
    // cuda_backend_test.cpp.)
    const int64_t H = 2, T = 3, D = 16, K = 4;
    Buffer q = make_buffer(be(), kF32, {T, H * D}, random_floats(T * H * D, 57));
    Buffer keys = make_buffer(be(), kBF16, {H, 1, D}, random_floats(H * D, 59));
    Buffer values = make_buffer(be(), kBF16, {H, 1, D}, random_floats(H * D, 60));
    Buffer pos = make_i64_buffer(be(), {1}, {0});
    Buffer sc = make_buffer(be(), kF32, {H, T, K}, std::vector<float>(H * T * K, 7.f));
    Buffer rw = make_i64_buffer(be(), {H, T, K}, std::vector<int64_t>(H * T * K, 7));
    Buffer ps = make_i64_buffer(be(), {H, T, K}, std::vector<int64_t>(H * T * K, 7));
    be().memory_topk(sc.view(), rw.view(), ps.view(), q.view(), keys.view(), pos.view(), 0, 0.25f);
    EXPECT_EQ(fetch_i64(be(), rw.view()), std::vector<int64_t>(H * T * K, -1));
    EXPECT_EQ(fetch_i64(be(), ps.view()), std::vector<int64_t>(H * T * K, -1));
    EXPECT_TRUE(all_close(fetch(be(), sc), std::vector<float>(H * T * K, -kInf), kBitExact));
    const auto pv = random_floats(H * T * (D + 2), 58, 0.5f, 1.5f);
    Buffer part = make_buffer(be(), kF32, {H, T, D + 2}, pv);
    Buffer ts = make_buffer(be(), kF32, {H, T}, std::vector<float>(H * T, -kInf));
    Buffer tp = make_i64_buffer(be(), {H, T}, std::vector<int64_t>(H * T, INT64_MAX));
    be().attn_accumulate_selected(part.view(), values.view(), sc.view(), rw.view(), ps.view(),
                                  ts.view(), tp.view());
    EXPECT_TRUE(all_close(fetch(be(), part), pv, kBitExact));
}

TEST_P(BackendOps, TopkThresholdIsExact) {
    const int64_t H = 2, T = 3;
    for (int64_t R : {1, 3}) {
        for (int64_t K : {1, 8, 128}) {
            for (bool holes : {true, false}) {
                SCOPED_TRACE(::testing::Message() << "R=" << R << " K=" << K << " holes " << holes);
                const int64_t n = R * H * T * K;
                // Few distinct scores (many ties), unique positions, one (h, t) with fewer than K
                // real candidates and (holes) absent candidates everywhere. Without holes one
                // rank's rows have K real candidates: the threshold is their worst.
                auto sv = random_floats(n, 60, -2.f, 2.f);
                std::vector<int64_t> pv(n);
                std::iota(pv.begin(), pv.end(), int64_t{0});
                std::mt19937 rng(61);
                std::shuffle(pv.begin(), pv.end(), rng);
                for (int64_t i = 0; i < n; ++i) {
                    sv[i] = std::round(sv[i] * 4.f) / 4.f;
                    const int64_t ht = (i / K) % (H * T);
                    if ((holes && i % 5 == 3) || (ht == 4 && i % K != 0)) {
                        sv[i] = -kInf;
                        pv[i] = -1;
                    }
                }
                Buffer s = make_buffer(be(), kF32, {R, H, T, K}, sv);
                Buffer p = make_i64_buffer(be(), {R, H, T, K}, pv);
                Buffer ts = be().alloc(kF32, {H, T});
                Buffer tp = be().alloc(DType::kI64, {H, T});
                be().topk_threshold(ts.view(), tp.view(), s.view(), p.view());
                std::vector<float> want_s;
                std::vector<int64_t> want_p;
                naive::topk_threshold(sv, pv, R, H, T, K, &want_s, &want_p);
                EXPECT_TRUE(all_close(fetch(be(), ts), want_s, kBitExact));
                EXPECT_EQ(fetch_i64(be(), tp.view()), want_p);
            }
        }
    }
}

TEST_P(BackendOps, AttnAccumulateSelected) {
    const int64_t H = 2, T = 3, D = 100;
    struct Case {
        DType dt;
        int64_t S, K;
    };
    for (Case cs : {Case{kF32, 400, 32}, Case{kBF16, 400, 32}, Case{kBF16, 2500, 2100}}) {
        const int64_t S = cs.S, K = cs.K;
        SCOPED_TRACE(::testing::Message() << dtype_name(cs.dt) << " K=" << K);
        // Candidates as memory_topk leaves them: per (h, t) K distinct rows, scores sorted best
        // first with some exact ties, positions of the rows; row (0, 1) has only K/2 real ones
        // (absent tail). A threshold that keeps two thirds, and (h, t) = (1, 2) with no
        // threshold (fewer than K real overall: everything passes).
        const auto rp = reversed_positions(S);
        std::vector<float> scv(H * T * K);
        std::vector<int64_t> rwv(H * T * K), psv(H * T * K);
        std::vector<float> thr_s(H * T);
        std::vector<int64_t> thr_p(H * T);
        std::mt19937 rng(70);
        for (int64_t i = 0; i < H * T; ++i) {
            std::vector<int64_t> perm(S);
            std::iota(perm.begin(), perm.end(), int64_t{0});
            std::shuffle(perm.begin(), perm.end(), rng);
            std::vector<std::pair<float, int64_t>> cand;  // (score, row)
            auto sc = random_floats(K, 71 + static_cast<uint32_t>(i), -3.f, 3.f);
            for (int64_t j = 0; j < K; ++j)
                cand.push_back({std::round(sc[j] * 8.f) / 8.f, perm[j]});
            std::sort(cand.begin(), cand.end(), [&](const auto& a, const auto& b) {
                return a.first != b.first ? a.first > b.first : rp[a.second] < rp[b.second];
            });
            const int64_t real = i == 1 ? K / 2 : K;
            for (int64_t j = 0; j < K; ++j) {
                const bool on = j < real;
                scv[i * K + j] = on ? cand[j].first : -kInf;
                rwv[i * K + j] = on ? cand[j].second : -1;
                psv[i * K + j] = on ? rp[cand[j].second] : -1;
            }
            const int64_t cut = 2 * real / 3;
            thr_s[i] = i == H * T - 1 ? -kInf : scv[i * K + cut];
            thr_p[i] = i == H * T - 1 ? INT64_MAX : psv[i * K + cut];
        }
        const auto vv = random_floats(H * S * D, 72);
        // A partial that already holds a local part; row 0 starts empty.
        auto pv = random_floats(H * T * (D + 2), 73);
        for (int64_t i = 0; i < H * T; ++i) {
            pv[i * (D + 2) + D] = i == 0 ? -kInf : 1.5f;
            pv[i * (D + 2) + D + 1] = i == 0 ? 0.f : 2.f;
            if (i == 0) std::fill_n(pv.begin(), D, 0.f);
        }
        auto run = [&](Backend& b) {
            Buffer v = make_buffer(b, cs.dt, {H, S, D}, vv);
            Buffer s = make_buffer(b, kF32, {H, T, K}, scv);
            Buffer r = make_i64_buffer(b, {H, T, K}, rwv), p = make_i64_buffer(b, {H, T, K}, psv);
            Buffer ts = make_buffer(b, kF32, {H, T}, thr_s);
            Buffer tp = make_i64_buffer(b, {H, T}, thr_p);
            Buffer part = make_buffer(b, kF32, {H, T, D + 2}, pv);
            b.attn_accumulate_selected(part.view(), v.view(), s.view(), r.view(), p.view(),
                                       ts.view(), tp.view());
            return fetch(b, part);
        };
        std::vector<float> want;
        if (naive()) {
            naive::Partial p = naive::Partial::from(pv, H, T, D);
            naive::attn_fold_selected(p, naive::stored_values(cs.dt, vv), S, scv, rwv, psv, thr_s,
                                      thr_p, K);
            want = p.floats();
        } else {
            want = run(cpu());
        }
        EXPECT_TRUE(all_close(run(be()), want, kSelected));
    }
}

// ---- precision -------------------------------------------------------------------------------

TEST_P(BackendOps, PrecisionChangesOnlyMatmulAndAttention) {
    // backend.h: kFast changes matmul and attn_accumulate only; every other op (the top-k path
    // included) gives the same bits in both modes.
    EXPECT_EQ(be().precision(), kEx) << "the default precision";
    const int64_t H = 2, T = 3, D = 64, C = H * D, S = 300, K = 8;
    const auto xv = random_floats(T * C, 90, -2.f, 2.f);
    const auto wv = random_floats(C, 91, 0.5f, 1.5f);
    const auto kv = random_floats(H * S * D, 92);
    const auto rp = reversed_positions(S);
    const std::vector<int32_t> ids = {3, 1, 4};
    auto run = [&](Precision p) {
        be().set_precision(p);
        std::vector<std::vector<unsigned char>> outs;
        Buffer x = make_buffer(be(), kF32, {T, C}, xv), w = make_buffer(be(), kF32, {C}, wv);
        Buffer o = be().alloc(kF32, {T, C});
        be().rmsnorm(o.view(), x.view(), w.view(), 1e-6f);
        outs.push_back(fetch_bytes(be(), o.view()));
        be().silu_mul(o.view(), x.view(), o.view());
        outs.push_back(fetch_bytes(be(), o.view()));
        be().add(o.view(), x.view(), o.view());
        outs.push_back(fetch_bytes(be(), o.view()));
        be().rope(o.view(), H, D, 777, 10000.f);
        outs.push_back(fetch_bytes(be(), o.view()));
        Buffer table = make_buffer(be(), kBF16, {8, C}, random_floats(8 * C, 93));
        be().embedding(o.view(), ids.data(), table.view(), 0);
        outs.push_back(fetch_bytes(be(), o.view()));
        Buffer keys = make_buffer(be(), kBF16, {H, S, D}, kv);
        be().scatter_heads(keys.view(), 5, x.view());
        outs.push_back(fetch_bytes(be(), keys.view()));
        Buffer pos = make_i64_buffer(be(), {S}, rp);
        Buffer sc = be().alloc(kF32, {H, T, K}), rw = be().alloc(DType::kI64, {H, T, K}),
               ps = be().alloc(DType::kI64, {H, T, K});
        be().memory_topk(sc.view(), rw.view(), ps.view(), x.view(), keys.view(), pos.view(), S,
                         0.2f);
        outs.push_back(fetch_bytes(be(), sc.view()));
        outs.push_back(fetch_bytes(be(), ps.view()));
        Buffer ts = be().alloc(kF32, {H, T}), tp = be().alloc(DType::kI64, {H, T});
        be().topk_threshold(ts.view(), tp.view(), reshape(sc.view(), {1, H, T, K}),
                            reshape(ps.view(), {1, H, T, K}));
        outs.push_back(fetch_bytes(be(), ts.view()));
        outs.push_back(fetch_bytes(be(), tp.view()));
        Buffer part =
            make_buffer(be(), kF32, {H, T, D + 2}, std::vector<float>(H * T * (D + 2), 0.f));
        be().attn_partial_init(part.view());
        be().attn_accumulate_selected(part.view(), keys.view(), sc.view(), rw.view(), ps.view(),
                                      ts.view(), tp.view());
        outs.push_back(fetch_bytes(be(), part.view()));
        Buffer parts = be().alloc(kF32, {2, H, T, D + 2});
        be().copy_rows(reshape(parts.view(), {2 * H * T, D + 2}), 0,
                       reshape(part.view(), {H * T, D + 2}), H * T);
        be().copy_rows(reshape(parts.view(), {2 * H * T, D + 2}), H * T,
                       reshape(part.view(), {H * T, D + 2}), H * T);
        be().attn_partial_merge(part.view(), parts.view());
        outs.push_back(fetch_bytes(be(), part.view()));
        be().attn_partial_finalize(o.view(), part.view());
        outs.push_back(fetch_bytes(be(), o.view()));
        Buffer lp = be().alloc(kF32, {T, 3});
        const std::vector<int32_t> targets = {0, 5, -1};
        be().logsoftmax_parts(lp.view(), x.view(), targets.data(), 0);
        outs.push_back(fetch_bytes(be(), lp.view()));
        return outs;
    };
    const auto exact = run(kEx);
    const auto fast = run(kFa);
    EXPECT_EQ(be().precision(), kFa) << "set_precision";
    ASSERT_EQ(exact.size(), fast.size());
    const char* names[] = {"rmsnorm",   "silu_mul",        "add",         "rope",
                           "embedding", "scatter_heads",   "topk scores", "topk positions",
                           "threshold", "threshold pos",   "selected",    "merge",
                           "finalize",  "logsoftmax_parts"};
    for (size_t i = 0; i < exact.size(); ++i) EXPECT_EQ(exact[i], fast[i]) << names[i];
}

}  // namespace
}  // namespace fot::testing
