// What is specific to CudaBackend and not an op of the Backend interface (the ops themselves are
// checked by the backend conformance suite, backend_conformance.h, which this file is linked
// with): the host-memory error, the CUDA-only extras (row max/sum-exp, fill_uniform), that the
// top-k launcher's scratch chunking changes no bit, that steady-state steps allocate nothing,
// and under the CUDA emulator that every barrier of the tensor-core attention kernel is needed.
// Skips without a GPU (or emulator).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/ops.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/backend/cuda_backend.h"
#include "runtime/core/status.h"
#include "tests/kernels/backend_conformance.h"
#include "tests/kernels/backend_reference.h"
#include "tests/kernels/cuda_test_util.h"

#if defined(FOT_CUDA_EMU_BUILD)
#include "cuda_runtime.h"  // the emulator's test controls (emu::skip_barrier, emu::set_seed)
#include "kernels/cuda/pdl.cuh"
#endif

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
constexpr Tol kExact{0.0, 0.0};

class CudaBackendTest : public ::testing::Test {
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

    CpuBackend cpu_;
    std::unique_ptr<CudaBackend> gpu_;
};

TEST_F(CudaBackendTest, RejectsHostMemoryWithAClearError) {
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

TEST_F(CudaBackendTest, RowMaxSumExp) {
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

// The bit patterns of floats (EXPECT_EQ on floats would take -0 for +0).
std::vector<uint32_t> fetch_bits(const std::vector<float>& v) {
    std::vector<uint32_t> out(v.size());
    std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
    return out;
}

std::vector<int64_t> reversed_positions(int64_t S) {
    std::vector<int64_t> p(static_cast<size_t>(std::max<int64_t>(S, 1)));
    for (int64_t i = 0; i < S; ++i) p[i] = 5000 + 3 * (S - i);
    return p;
}

TEST_F(CudaBackendTest, MemoryTopkGivesTheSameResultInSmallScratchChunks) {
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

// Top-k paths against each other: all compute the same fp32 scores and select exactly, so every
// score, row and position must agree bit for bit.
struct TopkPathCase {
    int64_t H, T, S, D, K;
    DType dtype;
    bool ties;
    std::vector<int64_t> scratch_rows = {};  // rows of scratch per pass to try besides H * T
};

class CudaTopkPaths : public CudaBackendTest {
  protected:
    struct Result {
        std::vector<float> s;
        std::vector<int64_t> r, p;
    };
    Result run(const TopkPathCase& c, kernels::cuda::TopkPath path, int64_t scratch_rows,
               kernels::cuda::TopkFilterStats* stats = nullptr, bool tc_scores = true) {
        const int64_t H = c.H, T = c.T, S = c.S, D = c.D, K = c.K;
        std::vector<float> kv = random_floats(H * S * D, 60, -1.f, 1.f);
        if (c.ties) {
            for (int64_t j = 1; j < H * S; ++j) std::copy_n(kv.begin(), D, kv.begin() + j * D);
        }
        Buffer q = make_buffer(*gpu_, DType::kF32, {T, H * D}, random_floats(T * H * D, 61));
        Buffer k = make_buffer(*gpu_, c.dtype, {H, S, D}, kv);
        Buffer pos = make_i64_buffer(*gpu_, {S}, reversed_positions(S));
        Buffer sc = gpu_->alloc(DType::kF32, {H, T, K}), rw = gpu_->alloc(DType::kI64, {H, T, K}),
               ps = gpu_->alloc(DType::kI64, {H, T, K});
        const int64_t row = kernels::cuda::memory_topk_row_scratch(S, K);
        Buffer scratch = gpu_->alloc(DType::kF32, {scratch_rows * row});
        kernels::cuda::memory_topk(
            sc.as<float>(), rw.as<int64_t>(), ps.as<int64_t>(), q.as<float>(), H * D, k.data(),
            c.dtype, S * D, pos.as<int64_t>(), H, T, S, D, K, 0.2f, scratch.as<float>(),
            scratch_rows * row, gpu_->stream().handle, path, stats, tc_scores);
        return {gpu_f32(sc), fetch_i64(*gpu_, rw.view()), fetch_i64(*gpu_, ps.view())};
    }
};

TEST_F(CudaTopkPaths, SlicedSelectGivesTheOneBlockResultBitForBit) {
    // Passes of < 1024 rows over >= 4 slices of 8192 scores select in two launches (a block
    // per row and slice, then one per row over the slices' K best): the one-block select's
    // bits. Cases: a short last slice, K 1000 (a 1024-slot shared-memory sort), every score
    // tied (the order is the positions'), and passes of one row. (Passes of more than 128 rows
    // select over the candidates with 256 threads, select_kernel<256, Candidates>: the same
    // code at another block size, too slow for the emulator at S >= 4 slices.)
    using kernels::cuda::TopkPath;
    const std::vector<TopkPathCase> cases = {
        {2, 1, 25001, 16, 128, DType::kBF16, false},
        {1, 2, 26000, 32, 1000, DType::kF32, false, {1}},
        {1, 1, 24577, 16, 64, DType::kF16, true},
    };
    for (const TopkPathCase& c : cases) {
        SCOPED_TRACE(::testing::Message() << "H" << c.H << " T" << c.T << " S" << c.S << " K" << c.K
                                          << (c.ties ? " ties" : ""));
#if defined(FOT_CUDA_EMU_BUILD)
        uint64_t before = emu::launches();
#endif
        const Result want = run(c, TopkPath::kScoreRowsOneBlock, c.H * c.T);
#if defined(FOT_CUDA_EMU_BUILD)
        const uint64_t one_block = emu::launches() - before;
#endif
        std::vector<int64_t> scratch_rows_list = {c.H * c.T};
        scratch_rows_list.insert(scratch_rows_list.end(), c.scratch_rows.begin(),
                                 c.scratch_rows.end());
        for (int64_t scratch_rows : scratch_rows_list) {
            SCOPED_TRACE(::testing::Message() << "scratch rows " << scratch_rows);
#if defined(FOT_CUDA_EMU_BUILD)
            before = emu::launches();
#endif
            const Result got = run(c, TopkPath::kAuto, scratch_rows);
#if defined(FOT_CUDA_EMU_BUILD)
            if (scratch_rows == c.H * c.T) {  // one pass: scores, slices, select
                EXPECT_EQ(emu::launches() - before, one_block + 1) << "the sliced select ran";
            }
#endif
            ASSERT_EQ(got.r, want.r);
            ASSERT_EQ(got.p, want.p);
            ASSERT_EQ(fetch_bits(got.s), fetch_bits(want.s));
        }
        EXPECT_EQ(std::count(want.r.begin(), want.r.end(), int64_t{-1}), 0);
    }
}

TEST_F(CudaTopkPaths, FilteredGivesTheScoreRowsResultBitForBit) {
    // The filtered path (a sample of every 8th key tile bounds each row's K-th best; the other
    // keys are kept only when better) against the score-rows path: every score, row and
    // position bit for bit. Cases: partial query tiles, a partial last sampled tile (1037 keys),
    // samples of exactly 4K keys (2007), K 1000 (a 1024-slot sort), D 16-128 in f32/bf16/f16,
    // every score tied (the order is the positions'; K 16 keeps 156 of the others), lists that
    // overflow (ties at K 4: 152 keys beat the bound, the cap is 32K = 128, so the call is redone
    // through score rows), and passes of whole heads, 65 rows, 5, 3 or 1.
    using kernels::cuda::TopkPath;
    const std::vector<TopkPathCase> cases = {
        {2, 70, 3000, 100, 64, DType::kBF16, false, {65}},
        {3, 9, 1500, 16, 8, DType::kF32, false, {1}},
        {1, 20, 9001, 64, 224, DType::kF16, false},
        {2, 10, 2007, 128, 64, DType::kF32, false, {5}},
        {1, 9, 1037, 100, 32, DType::kBF16, false, {3}},
        {1, 9, 700, 32, 16, DType::kF32, true},
        {1, 9, 3000, 16, 4, DType::kBF16, true},
        {1, 9, 32100, 16, 1000, DType::kF32, false},
    };
    for (const TopkPathCase& c : cases) {
        SCOPED_TRACE(::testing::Message() << "H" << c.H << " T" << c.T << " S" << c.S << " D" << c.D
                                          << " K" << c.K << (c.ties ? " ties" : ""));
        ASSERT_TRUE(kernels::cuda::memory_topk_filtered_supported(c.S, c.D, c.K));
        const Result want = run(c, TopkPath::kScoreRows, c.H * c.T);
        std::vector<int64_t> scratch_rows_list = {c.H * c.T};
        scratch_rows_list.insert(scratch_rows_list.end(), c.scratch_rows.begin(),
                                 c.scratch_rows.end());
        [[maybe_unused]] uint64_t filtered_launches = 0;
        for (int64_t scratch_rows : scratch_rows_list) {
            SCOPED_TRACE(::testing::Message() << "scratch rows " << scratch_rows);
            kernels::cuda::TopkFilterStats stats;
#if defined(FOT_CUDA_EMU_BUILD)
            const uint64_t before = emu::launches();
#endif
            const Result got = run(c, TopkPath::kFiltered, scratch_rows, &stats);
#if defined(FOT_CUDA_EMU_BUILD)
            if (scratch_rows == c.H * c.T) filtered_launches = emu::launches() - before;
#endif
            ASSERT_EQ(got.r, want.r);
            ASSERT_EQ(got.p, want.p);
            ASSERT_EQ(fetch_bits(got.s), fetch_bits(want.s));
            // The filter did its work: lists that fit (or, for the overflow case, that did not),
            // and fewer keys kept than were scored after the sample.
            ASSERT_EQ(stats.rows, c.H * c.T);
            const bool overflow = c.ties && c.K == 4;
            EXPECT_EQ(stats.overflow_rows, overflow ? stats.rows : 0);
            EXPECT_GT(stats.appended, 0);
            if (!overflow) {
                EXPECT_LE(stats.max_appended, stats.cap);
                EXPECT_LT(stats.max_appended, c.S / 2) << "the bound kept most keys";
            }
        }
        // Prefill-sized passes take it by default (the same launches; one pass of whole heads
        // is 4 of them, against the score-rows path's 2 or 3).
#if defined(FOT_CUDA_EMU_BUILD)
        const uint64_t before = emu::launches();
#endif
        const Result got = run(c, TopkPath::kAuto, c.H * c.T);
#if defined(FOT_CUDA_EMU_BUILD)
        EXPECT_EQ(emu::launches() - before, filtered_launches) << "kAuto took another path";
#endif
        ASSERT_EQ(got.r, want.r);
        ASSERT_EQ(fetch_bits(got.s), fetch_bits(want.s));
        EXPECT_EQ(std::count(want.r.begin(), want.r.end(), int64_t{-1}), 0);
    }
    // K above the shared-memory sort, or a sample under 4K keys (3000 keys sample 384).
    EXPECT_FALSE(kernels::cuda::memory_topk_filtered_supported(40000, 16, 1025));
    EXPECT_FALSE(kernels::cuda::memory_topk_filtered_supported(3000, 100, 97));
    EXPECT_TRUE(kernels::cuda::memory_topk_filtered_supported(3000, 100, 96));
    EXPECT_THROW(run({1, 12, 3000, 16, 128, DType::kF32, false, {}}, TopkPath::kFiltered, 12),
                 Error);
}

TEST_F(CudaTopkPaths, TensorCoreScoresAreFp32Accurate) {
    // Prefill passes over bf16 keys score on the tensor cores (q in three bf16 pieces, fp32
    // accumulation). Against the fp32 tile kernel: the same selection up to near-ties (the
    // same keys under the emulator), and scores about as
    // close to the exact ones (in double) as the fp32 kernel's own: the largest error at most 4x
    // the fp32 kernel's largest (under the emulator 0.8-1.5x: 6e-8 to 8e-7 relative; a GPU's
    // accumulator may round less well) and below 1e-5 relative (the conformance tolerance); but
    // not the same bits everywhere (the tensor-core path ran). Cases: head dims 100 (padded to
    // 112), 128, 16 and 30 (4-byte copies), partial query and key tiles, both prefill paths.
    using kernels::cuda::TopkPath;
    const std::vector<TopkPathCase> cases = {
        {2, 70, 3000, 100, 64, DType::kBF16, false},
        {1, 20, 1000, 128, 16, DType::kBF16, false},
        {1, 12, 700, 16, 8, DType::kBF16, false},
        {1, 9, 500, 30, 8, DType::kBF16, false},
    };
    for (const TopkPathCase& c : cases) {
        const int64_t H = c.H, T = c.T, S = c.S, D = c.D, K = c.K;
        // run()'s inputs: keys stored in bf16, queries in f32.
        std::vector<float> kv = random_floats(H * S * D, 60, -1.f, 1.f);
        for (float& x : kv) x = round_bf16(x);
        const std::vector<float> qv = random_floats(T * H * D, 61);
        for (TopkPath path : {TopkPath::kScoreRows, TopkPath::kFiltered}) {
            SCOPED_TRACE(::testing::Message() << "H" << H << " T" << T << " S" << S << " D" << D
                                              << " K" << K << " path " << static_cast<int>(path));
            ASSERT_TRUE(kernels::cuda::memory_topk_filtered_supported(S, D, K));
            const Result tc = run(c, path, H * T, nullptr, true);
            const Result fp = run(c, path, H * T, nullptr, false);
            // The selections may differ only between keys whose exact scores are closer than the
            // two kernels' rounding (the closest pair here is ~1e-6 apart, as large as an fp32
            // error): every selected key of either is within 1e-5 (relative) of the exact k-th
            // best. Under the emulator they are the same keys.
            double tc_err = 0, fp_err = 0;
            int64_t differ = 0, rows_differ = 0;
            std::vector<double> exact(static_cast<size_t>(S)), sorted;
            for (int64_t h = 0; h < H; ++h) {
                for (int64_t t = 0; t < T; ++t) {
                    for (int64_t r = 0; r < S; ++r) {
                        double e = 0;
                        for (int64_t d = 0; d < D; ++d) {
                            e += double(qv[t * H * D + h * D + d]) * kv[(h * S + r) * D + d];
                        }
                        exact[static_cast<size_t>(r)] = e * 0.2f;  // run()'s scale
                    }
                    sorted = exact;
                    std::nth_element(sorted.begin(), sorted.begin() + (K - 1), sorted.end(),
                                     std::greater<double>());
                    const double kth = sorted[static_cast<size_t>(K - 1)];
                    const double tol = 1e-5 * std::max(1.0, std::fabs(kth));
                    bool same = true;
                    for (int64_t i = 0; i < K; ++i) {
                        const int64_t o = (h * T + t) * K + i;
                        same = same && tc.r[o] == fp.r[o];
                        for (const Result* res : {&tc, &fp}) {
                            const int64_t r = res->r[o];
                            ASSERT_TRUE(r >= 0 && r < S) << "row " << r;
                            const double e = exact[static_cast<size_t>(r)];
                            EXPECT_GE(e, kth - tol) << "h " << h << " t " << t << ": row " << r
                                                    << " is not among the k best";
                            double& worst = res == &tc ? tc_err : fp_err;
                            worst = std::max(
                                worst, std::fabs(res->s[o] - e) / std::max(1.0, std::fabs(e)));
                        }
                        differ += fetch_bits({tc.s[o]}) != fetch_bits({fp.s[o]});
                    }
                    rows_differ += !same;
                }
            }
#if defined(FOT_CUDA_EMU_BUILD)
            EXPECT_EQ(rows_differ, 0) << "the emulator's selections differ";
            ASSERT_EQ(tc.r, fp.r);
            ASSERT_EQ(tc.p, fp.p);
#else
            EXPECT_LE(rows_differ, H * T / 10) << "selections differ in many (head, query) rows";
#endif
            EXPECT_LE(tc_err, std::max(4 * fp_err, 1e-7)) << "fp32 kernel's error " << fp_err;
            EXPECT_LT(tc_err, 1e-5);
            EXPECT_GT(differ, 0) << "the same bits as the fp32 kernel: did the tensor cores run?";
        }
    }
}

TEST_F(CudaBackendTest, TopkOnAnUnallocatedShardLeavesThePartialAlone) {
    // An mp rank whose shard is empty takes part in top-k with no candidates: all slots
    // absent, and the partial keeps its local part. CudaBackend also takes arenas that were
    // never allocated (empty views; MemoryStore always allocates one row, CpuBackend needs it).
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

TEST_F(CudaBackendTest, GroupedGemvIsEachGemv) {
    // kernels::cuda::gemv_group (one launch for q|k|v or gate|up) against one gemv per matrix:
    // the same bits; odd N puts the next matrix on a warp boundary in the grouped launch. K 64
    // runs one warp per row pair, K 3200 (the 3B shape) splits K over 4 warps, so a block
    // holds row pairs of two matrices and the last block has dead warps at the barrier.
    EXPECT_EQ(kernels::cuda::gemv_split(DType::kBF16, 64), 1);
    EXPECT_EQ(kernels::cuda::gemv_split(DType::kBF16, 3200), 4);
    EXPECT_EQ(kernels::cuda::gemv_split(DType::kBF16, 8640), 8);
    for (int64_t K : {int64_t{64}, int64_t{3200}}) {
        SCOPED_TRACE(K);
        const int64_t T = 2;
        const std::vector<int64_t> Ns = {33, 8, 17};
        Buffer x = make_buffer(*gpu_, DType::kBF16, {T, K}, random_floats(T * K, 150));
        std::vector<Buffer> ws, one, grp;
        std::vector<kernels::cuda::GemvTarget> targets;
        for (size_t i = 0; i < Ns.size(); ++i) {
            ws.push_back(make_buffer(*gpu_, DType::kBF16, {Ns[i], K},
                                     random_floats(Ns[i] * K, 151 + int(i))));
            one.push_back(gpu_->alloc(DType::kF32, {T, Ns[i]}));
            grp.push_back(gpu_->alloc(DType::kF32, {T, Ns[i]}));
            kernels::cuda::gemv(one.back().as<float>(), x.data(), DType::kBF16, ws.back().data(),
                                DType::kBF16, T, Ns[i], K, gpu_->stream().handle);
            targets.push_back({grp.back().as<float>(), ws.back().data(), Ns[i]});
        }
        kernels::cuda::gemv_group(targets.data(), 3, x.data(), DType::kBF16, DType::kBF16, T, K,
                                  gpu_->stream().handle);
        for (size_t i = 0; i < Ns.size(); ++i) {
            EXPECT_EQ(fetch_bytes(*gpu_, grp[i].view()), fetch_bytes(*gpu_, one[i].view())) << i;
        }
        EXPECT_THROW(kernels::cuda::gemv_group(targets.data(), 4, x.data(), DType::kBF16,
                                               DType::kBF16, T, K, gpu_->stream().handle),
                     Error);
    }
}

TEST_F(CudaBackendTest, GemvRowBitsDoNotDependOnT) {
    // ops.h: the order of a GEMV row's sums depends on K and the dtypes only, so a batched
    // decode (T tokens in one launch) gives each token the bits of its own T = 1 launch.
    // f32 x into bf16 weights (the exact path) and bf16 x, K split 1, 4 and 8 ways.
    const int64_t N = 21;
    for (int64_t K : {int64_t{96}, int64_t{3200}, int64_t{8640}}) {
        for (DType xt : {DType::kF32, DType::kBF16}) {
            SCOPED_TRACE(::testing::Message() << "K " << K << " x " << dtype_name(xt));
            const int64_t T = 3;
            const auto xv = random_floats(T * K, 160, -2.f, 2.f);
            Buffer x = make_buffer(*gpu_, xt, {T, K}, xv);
            Buffer w = make_buffer(*gpu_, DType::kBF16, {N, K}, random_floats(N * K, 161));
            Buffer all = gpu_->alloc(DType::kF32, {T, N});
            kernels::cuda::gemv(all.as<float>(), x.data(), xt, w.data(), DType::kBF16, T, N, K,
                                gpu_->stream().handle);
            const auto allv = gpu_f32(all);
            for (int64_t t = 0; t < T; ++t) {
                Buffer xt1 =
                    make_buffer(*gpu_, xt, {1, K},
                                std::vector<float>(xv.begin() + t * K, xv.begin() + (t + 1) * K));
                Buffer o1 = gpu_->alloc(DType::kF32, {1, N});
                kernels::cuda::gemv(o1.as<float>(), xt1.data(), xt, w.data(), DType::kBF16, 1, N, K,
                                    gpu_->stream().handle);
                const auto o1v = gpu_f32(o1);
                EXPECT_EQ(std::memcmp(o1v.data(), allv.data() + t * N, N * sizeof(float)), 0)
                    << "t " << t;
            }
        }
    }
}

TEST_F(CudaBackendTest, FillUniformIsDeterministicAndInRange) {
    Buffer a = gpu_->alloc(DType::kBF16, {1000}), b = gpu_->alloc(DType::kBF16, {1000});
    gpu_->fill_uniform(a.view(), 5, 0.5f);
    gpu_->fill_uniform(b.view(), 5, 0.5f);
    const auto av = gpu_f32(a);
    EXPECT_EQ(fetch_bytes(*gpu_, a.view()), fetch_bytes(*gpu_, b.view()));
    EXPECT_TRUE(std::all_of(av.begin(), av.end(), [](float x) { return x >= -0.5f && x <= 0.5f; }));
    EXPECT_GT(std::set<float>(av.begin(), av.end()).size(), 100u);
}

TEST_F(CudaBackendTest, RepeatedStepsDoNotAllocate) {
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

// Ops that allocate while a graph piece is captured (CudaBackend::graph_begin): scratch that
// grows (its old block freed) and a new buffer (zero-filled) come from a side stream that is
// waited for, a buffer freed meanwhile is held until the piece has been launched (the
// emulator aborts a stream-ordered allocation or free on a capturing stream), and the graph
// gives what the same ops give as ordinary launches.
TEST_F(CudaBackendTest, OpsThatAllocateWhileCapturedRunRightInTheGraph) {
    const int64_t H = 2, D = 64, T = 1, K = 16, S_small = 300, S = 20000;
    Buffer q = make_buffer(*gpu_, DType::kF32, {T, H * D}, random_floats(T * H * D, 90));
    Buffer k = make_buffer(*gpu_, DType::kBF16, {H, S, D}, random_floats(H * S * D, 91));
    Buffer pos = make_i64_buffer(*gpu_, {S}, reversed_positions(S));
    struct Out {
        Buffer sc, rw, ps;
    };
    auto outputs = [&] {
        return Out{gpu_->alloc(DType::kF32, {H, T, K}), gpu_->alloc(DType::kI64, {H, T, K}),
                   gpu_->alloc(DType::kI64, {H, T, K})};
    };
    auto topk = [&](Out& o, int64_t n) {
        gpu_->memory_topk(o.sc.view(), o.rw.view(), o.ps.view(), q.view(), k.view(), pos.view(), n,
                          0.125f);
    };
    Out small = outputs(), graph = outputs(), eager = outputs();
    topk(small, S_small);  // sizes the top-k scratch for a small memory
    gpu_->synchronize();
    Buffer doomed = gpu_->alloc(DType::kF32, {1000});
    const int64_t allocations = gpu_->allocation_count();
    ASSERT_TRUE(gpu_->graph_begin(T));
    topk(graph, S);  // grows the scratch: the old block is freed, a larger one made
    Buffer fresh = gpu_->alloc(DType::kF32, {H, T, K});
    gpu_->add(fresh.view(), fresh.view(), graph.sc.view());  // 0 + scores, if it was zeroed
    doomed = Buffer();
    ASSERT_TRUE(gpu_->graph_end(0));
    EXPECT_EQ(gpu_->allocation_count(), allocations + 2) << "the scratch and the buffer";
    EXPECT_EQ(gpu_->graph_launches(), 1);
    topk(eager, S);
    gpu_->synchronize();
    EXPECT_EQ(fetch_bytes(*gpu_, graph.sc.view()), fetch_bytes(*gpu_, eager.sc.view()));
    EXPECT_EQ(fetch_i64(*gpu_, graph.rw.view()), fetch_i64(*gpu_, eager.rw.view()));
    EXPECT_EQ(fetch_i64(*gpu_, graph.ps.view()), fetch_i64(*gpu_, eager.ps.view()));
    EXPECT_EQ(fetch_bytes(*gpu_, fresh.view()), fetch_bytes(*gpu_, eager.sc.view()));
    EXPECT_NE(fetch_bytes(*gpu_, small.sc.view()), fetch_bytes(*gpu_, eager.sc.view()))
        << "a memory of " << S_small << " keys gave the scores of " << S;
}

// set_profiling: every op adds its call, FLOPs and bytes to its phase and to its own line of
// op_stats() (named after the op), the lines add up to the phases, and step graphs are off
// while profiling is on (the events must bracket each op's own launches).
TEST_F(CudaBackendTest, ProfilingCountsEachOpInItsPhaseAndInItsOwnLine) {
    const int64_t T = 2, C = 64, N = 32;
    Buffer x = gpu_->alloc(DType::kF32, {T, C}), xn = gpu_->alloc(DType::kF32, {T, C});
    Buffer w = gpu_->alloc(DType::kF32, {N, C}), nw = gpu_->alloc(DType::kF32, {C});
    Buffer out = gpu_->alloc(DType::kF32, {T, N});
    gpu_->fill_uniform(x.view(), 1, 1.f);
    gpu_->fill_uniform(w.view(), 2, 1.f);
    gpu_->fill_uniform(nw.view(), 3, 1.f);
    gpu_->set_profiling(true);
    EXPECT_FALSE(gpu_->graph_begin(T));
    gpu_->rmsnorm(xn.view(), x.view(), nw.view(), 1e-5f);
    gpu_->rmsnorm(xn.view(), x.view(), nw.view(), 1e-5f);
    gpu_->add(x.view(), x.view(), xn.view());
    gpu_->matmul(out.view(), xn.view(), w.view());
    const PhaseStats phases = gpu_->take_phase_stats();
    const std::vector<OpStat> ops = gpu_->op_stats();
    EXPECT_EQ(phases[static_cast<size_t>(Phase::kOther)].calls, 3);
    EXPECT_EQ(phases[static_cast<size_t>(Phase::kGemm)].calls, 1);
    auto line = [&](const std::string& op) {
        for (const OpStat& o : ops) {
            if (o.op == op) return o;
        }
        ADD_FAILURE() << "no line for " << op;
        return OpStat{};
    };
    const double norm_bytes =
        static_cast<double>(x.view().nbytes() + xn.view().nbytes() + nw.view().nbytes());
    EXPECT_EQ(line("rmsnorm").stat.calls, 2);
    EXPECT_EQ(line("rmsnorm").phase, Phase::kOther);
    EXPECT_DOUBLE_EQ(line("rmsnorm").stat.bytes, 2 * norm_bytes);
    EXPECT_EQ(line("add").stat.calls, 1);
    EXPECT_EQ(line("matmul").phase, Phase::kGemm);
    EXPECT_DOUBLE_EQ(line("matmul").stat.flops, 2.0 * T * N * C);
    PhaseStats sums{};
    for (const OpStat& o : ops) {
        PhaseStat& p = sums[static_cast<size_t>(o.phase)];
        p.calls += o.stat.calls;
        p.bytes += o.stat.bytes;
        p.seconds += o.stat.seconds;
    }
    for (size_t i = 0; i < phases.size(); ++i) {
        EXPECT_EQ(sums[i].calls, phases[i].calls) << phase_name(static_cast<Phase>(i));
        EXPECT_DOUBLE_EQ(sums[i].bytes, phases[i].bytes) << phase_name(static_cast<Phase>(i));
        EXPECT_NEAR(sums[i].seconds, phases[i].seconds, 1e-9);
    }
    gpu_->take_phase_stats();
    EXPECT_TRUE(gpu_->op_stats().empty()) << "a take without ops kept the last lines";
    gpu_->set_profiling(false);
    ASSERT_TRUE(gpu_->graph_begin(T));
    gpu_->graph_abort();
}

// Decode attention with key splits merges them in the kernel's last block per head, counting
// finished blocks in per-head tickets that each launch must leave zeroed: launches of 3, then
// 5 heads (the tickets grow), then 3 again, each twice, all match the CPU backend (a ticket
// left armed would skip a merge and leave the partial as initialised).
TEST_F(CudaBackendTest, DecodeSplitMergeInTheLastBlockRearmsItsTickets) {
    const int64_t D = 64, T = 2, S = 3000;
    for (int64_t H : {3, 5, 3}) {
        SCOPED_TRACE(::testing::Message() << "H " << H);
        Pair q = both(DType::kF32, {T, H * D}, random_floats(T * H * D, 90 + int(H), -2.f, 2.f));
        Pair k = both(DType::kBF16, {H, S, D}, random_floats(H * S * D, 91));
        Pair v = both(DType::kBF16, {H, S, D}, random_floats(H * S * D, 92));
        Buffer want = cpu_.alloc(DType::kF32, {H, T, D + 2});
        cpu_.attn_partial_init(want.view());
        cpu_.attn_accumulate(want.view(), q.c.view(), k.c.view(), v.c.view(), S, 0.125f, kNoMask);
        const std::vector<float> w = fetch_f32(cpu_, want.view());
        for (int rep = 0; rep < 2; ++rep) {
            Buffer part = gpu_->alloc(DType::kF32, {H, T, D + 2});
            gpu_->attn_partial_init(part.view());
#if defined(FOT_CUDA_EMU_BUILD)
            const uint64_t before = emu::launches();
#endif
            gpu_->attn_accumulate(part.view(), q.g.view(), k.g.view(), v.g.view(), S, 0.125f,
                                  kNoMask);
#if defined(FOT_CUDA_EMU_BUILD)
            EXPECT_EQ(emu::launches() - before, 1u) << "the splits merge without a launch";
#endif
            EXPECT_TRUE(all_close(gpu_f32(part), w, Tol{2e-5, 3e-5})) << "launch " << rep;
        }
    }
    ASSERT_GT(kernels::cuda::attn_accumulate_splits(3, T, S, D, kNoMask, 1), 1)
        << "the case must split its keys";
}

// One query (decode proper) runs a decode kernel built for one query (more keys in flight per
// lane; bf16 values at head_dim 100 staged in shared memory, f32 ones not: they do not fit);
// more queries run the general one. Each query row's arithmetic is the same in all, so row 0
// of a two-query call equals the one-query call bit for bit: with one split (folded into the
// partial in the block) and with many (merged by the last block).
TEST_F(CudaBackendTest, DecodeOneQueryKernelGivesTheRowOfTheGeneralKernel) {
    const int64_t H = 3, D = 100;
    for (int64_t S : {100, 3000}) {
        for (DType kv : {DType::kBF16, DType::kF32}) {
            SCOPED_TRACE(::testing::Message() << "S " << S << " " << dtype_name(kv));
            const auto qv = random_floats(2 * H * D, 95, -2.f, 2.f);
            Buffer q2 = make_buffer(*gpu_, DType::kF32, {2, H * D}, qv);
            Buffer q1 = make_buffer(*gpu_, DType::kF32, {1, H * D},
                                    std::vector<float>(qv.begin(), qv.begin() + H * D));
            Buffer k = make_buffer(*gpu_, kv, {H, S, D}, random_floats(H * S * D, 96));
            Buffer v = make_buffer(*gpu_, kv, {H, S, D}, random_floats(H * S * D, 97));
            auto run = [&](Buffer& q, int64_t T) {
                Buffer part = gpu_->alloc(DType::kF32, {H, T, D + 2});
                gpu_->attn_partial_init(part.view());
                gpu_->attn_accumulate(part.view(), q.view(), k.view(), v.view(), S, 0.1f, kNoMask);
                return gpu_f32(part);
            };
            const std::vector<uint32_t> one = fetch_bits(run(q1, 1)), two = fetch_bits(run(q2, 2));
            for (int64_t h = 0; h < H; ++h) {
                for (int64_t d = 0; d < D + 2; ++d) {
                    ASSERT_EQ(one[h * (D + 2) + d], two[h * 2 * (D + 2) + d])
                        << "head " << h << " element " << d;
                }
            }
        }
    }
    ASSERT_GT(kernels::cuda::attn_accumulate_splits(3, 1, 3000, D, kNoMask, 1), 1)
        << "the long case must split its keys";
    ASSERT_EQ(kernels::cuda::attn_accumulate_splits(3, 1, 100, D, kNoMask, 1000), 1)
        << "the short case must not, on any device";
}

// A partial [rows, D + 2] that already holds a state from earlier keys: o, finite m and
// positive l; every fifth row empty.
std::vector<float> partial_state(int64_t rows, int64_t D, uint32_t seed) {
    std::vector<float> state = random_floats(rows * (D + 2), seed);
    for (int64_t r = 0; r < rows; ++r) {
        float* st = state.data() + r * (D + 2);
        st[D] = r % 5 == 0 ? -kInf : st[D] * 4.f;
        st[D + 1] = r % 5 == 0 ? 0.f : 1.f + std::fabs(st[D + 1]);
        if (r % 5 == 0) std::fill(st, st + D, 0.f);
    }
    return state;
}

// The tensor-core kernel with two 16-row m-tiles per warp (128-query blocks) gives each row the
// bits of one m-tile per warp (64-query blocks), session 9's layout: a row's scores sum their
// k-steps in the same order, its softmax sees the same tiles (those a warp skips are fully
// masked for it) and P.V sums the same way. Checked with one key split, from a partial that
// already holds a state (some rows empty), causal windows whose diagonal crosses the blocks,
// key counts off every tile, head dims padded inside the tile (100 and 104: 13 n-tiles of O).
TEST_F(CudaBackendTest, TensorCoreAttentionRowsDoNotDependOnTheMTilesPerWarp) {
    struct Case {
        int64_t H, T, S, D, causal_offset;
    };
    const std::vector<Case> cases = {
        {2, 130, 300, 100, 170},      // a local window: S = T + offset
        {1, 200, 333, 104, kNoMask},  // memory: every key visible
        {1, 257, 500, 64, 243},       // a last block of one row
        {2, 150, 90, 16, 0},          // rows past the last key see all S keys
        {1, 129, 200, 32, 40},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << "H " << c.H << " T " << c.T << " S " << c.S << " D "
                                          << c.D << " offset " << c.causal_offset);
        const int64_t H = c.H, T = c.T, S = c.S, D = c.D;
        ASSERT_EQ(kernels::cuda::attn_tc_m_tiles(T, D), 2);
        Buffer q =
            make_buffer(*gpu_, DType::kF32, {T, H * D}, random_floats(T * H * D, 71, -2.f, 2.f));
        Buffer k =
            make_buffer(*gpu_, DType::kBF16, {H, S, D}, random_floats(H * S * D, 72, -2.f, 2.f));
        Buffer v = make_buffer(*gpu_, DType::kBF16, {H, S, D}, random_floats(H * S * D, 73));
        const std::vector<float> state = partial_state(H * T, D, 74);
        auto run = [&](int m_tiles) {
            Buffer part = make_buffer(*gpu_, DType::kF32, {H, T, D + 2}, state);
            kernels::cuda::attn_accumulate_tc(part.as<float>(), q.as<float>(), H * D, k.data(),
                                              v.data(), S * D, H, T, S, D, 0.1f, c.causal_offset, 1,
                                              nullptr, gpu_->stream().handle, m_tiles);
            return fetch_bits(gpu_f32(part));
        };
        const std::vector<uint32_t> one = run(1), two = run(2);
        ASSERT_EQ(one.size(), two.size());
        for (size_t i = 0; i < one.size(); ++i) {
            ASSERT_EQ(one[i], two[i]) << "row " << i / (D + 2) << " element " << i % (D + 2);
        }
        EXPECT_NE(fetch_bits(state), one) << "the keys changed nothing";
    }
    EXPECT_EQ(kernels::cuda::attn_tc_m_tiles(64, 100), 1) << "one 64-query block";
    EXPECT_EQ(kernels::cuda::attn_tc_m_tiles(2048, 128), 1) << "head dim 128 would spill";
    EXPECT_EQ(kernels::cuda::attn_tc_m_tiles(2048, 112), 1) << "head dim 112 would spill";
}

// The wgmma wrappers (kernels/cuda/wgmma.cuh) on one warpgroup, with B stored as the attention
// kernel stores its key tiles (K-major) and value tiles (MN-major): every output against exact
// sums of the bf16 products. On a GPU this checks the descriptor and fragment layouts that
// the emulator implements (wgmma.cuh's header) against the hardware; products of bf16 are
// exact in f32, so only the order of the f32 sums may differ.
TEST_F(CudaBackendTest, WgmmaProbeMatchesExactSums) {
    if (!kernels::cuda::wgmma_device()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
    for (int N : {64, 104, 128}) {
        for (int K : {16, 112}) {
            for (bool mn : {false, true}) {
                SCOPED_TRACE(::testing::Message() << "N " << N << " K " << K << " MN-major " << mn);
                const auto av = testing::naive::stored_values(
                    DType::kBF16, random_floats(64 * K, 90 + N, -2.f, 2.f));
                const auto bv = testing::naive::stored_values(
                    DType::kBF16, random_floats(N * K, 91 + K, -2.f, 2.f));
                Buffer a = make_buffer(*gpu_, DType::kBF16, {64, K}, av);
                Buffer b = make_buffer(*gpu_, DType::kBF16, {mn ? K : N, mn ? N : K}, bv);
                Buffer out = gpu_->alloc(DType::kF32, {64, N});
                kernels::cuda::wgmma_probe(out.as<float>(), a.data(), b.data(), N, K, mn,
                                           gpu_->stream().handle);
                const std::vector<float> got = gpu_f32(out);
                for (int r = 0; r < 64; ++r) {
                    for (int n = 0; n < N; ++n) {
                        double want = 0, mag = 0;
                        for (int k = 0; k < K; ++k) {
                            const double x =
                                double(av[r * K + k]) * double(mn ? bv[k * N + n] : bv[n * K + k]);
                            want += x;
                            mag += std::fabs(x);
                        }
                        ASSERT_NEAR(got[r * N + n], want, 1e-6 * mag + 1e-30)
                            << "row " << r << " column " << n;
                    }
                }
            }
        }
    }
}

// The wgmma attention kernel (attention_wgmma.cu) against the mma.sync kernel with one m-tile
// per warp (the same 64-query blocks, the same softmax): the MT test's cases plus head dims 128
// and 40, from a partial that already holds a state. The emulator sums a wgmma's k-steps as
// it sums mma.sync's, so there every bit is the same; a GPU's tensor cores may add the
// products of a k-step in another order, so there the rows agree to rounding.
TEST_F(CudaBackendTest, WgmmaAttentionGivesTheRowsOfTheMmaSyncKernel) {
    if (!kernels::cuda::wgmma_device()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
    struct Case {
        int64_t H, T, S, D, causal_offset;
    };
    const std::vector<Case> cases = {
        {2, 130, 300, 100, 170},      // a local window: S = T + offset
        {1, 200, 333, 104, kNoMask},  // memory: every key visible
        {1, 257, 500, 64, 243},       // a last block of one row
        {2, 150, 90, 40, 0},          // rows past the last key see all S keys
        {1, 129, 200, 128, 40},      {1, 70, 64, 100, kNoMask},  // one key tile
        {1, 100, 171, 98, 71},  // 4-byte copies (rows of 196 bytes), a partial last tile
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << "H " << c.H << " T " << c.T << " S " << c.S << " D "
                                          << c.D << " offset " << c.causal_offset);
        const int64_t H = c.H, T = c.T, S = c.S, D = c.D;
        ASSERT_TRUE(kernels::cuda::attn_tc_wgmma_supported(D));
        Buffer q =
            make_buffer(*gpu_, DType::kF32, {T, H * D}, random_floats(T * H * D, 81, -2.f, 2.f));
        Buffer k =
            make_buffer(*gpu_, DType::kBF16, {H, S, D}, random_floats(H * S * D, 82, -2.f, 2.f));
        Buffer v = make_buffer(*gpu_, DType::kBF16, {H, S, D}, random_floats(H * S * D, 83));
        const std::vector<float> state = partial_state(H * T, D, 84);
        auto run = [&](int m_tiles) {
            Buffer part = make_buffer(*gpu_, DType::kF32, {H, T, D + 2}, state);
            kernels::cuda::attn_accumulate_tc(part.as<float>(), q.as<float>(), H * D, k.data(),
                                              v.data(), S * D, H, T, S, D, 0.1f, c.causal_offset, 1,
                                              nullptr, gpu_->stream().handle, m_tiles);
            return gpu_f32(part);
        };
        const std::vector<float> mma = run(1), wg = run(kernels::cuda::kAttnTcWgmma);
        ASSERT_EQ(mma.size(), wg.size());
        const std::vector<uint32_t> mma_bits = fetch_bits(mma), wg_bits = fetch_bits(wg);
        for (size_t i = 0; i < mma.size(); ++i) {
#if defined(FOT_CUDA_EMU_BUILD)
            ASSERT_EQ(wg_bits[i], mma_bits[i])
                << "row " << i / (D + 2) << " element " << i % (D + 2);
#else
            ASSERT_NEAR(wg[i], mma[i], 2e-3f * (1.f + std::fabs(mma[i])))
                << "row " << i / (D + 2) << " element " << i % (D + 2);
#endif
        }
        EXPECT_NE(state, wg) << "the keys changed nothing";
    }
    EXPECT_FALSE(kernels::cuda::attn_tc_wgmma_supported(16)) << "no wgmma instance below 33";
    EXPECT_FALSE(kernels::cuda::attn_tc_wgmma_supported(108)) << "nor for 105-112";
}

// Through CudaBackend (the model's init / local / memory / finalize sequence) with the wgmma
// kernel made the default: the fast attention cases against the naive rules, as the
// conformance suite holds the mma.sync kernel.
TEST_F(CudaBackendTest, WgmmaAttentionThroughTheBackendMatchesTheNaiveRules) {
    if (!kernels::cuda::wgmma_device()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
    kernels::cuda::set_attn_tc_wgmma(1);
    const std::vector<testing::AttnCase> cases = {
        {Precision::kFast, 100, 64, 40, 330, DType::kBF16, DType::kBF16, 2},
        {Precision::kFast, 100, 70, 0, 200, DType::kBF16, DType::kBF16, 1},
        {Precision::kFast, 64, 130, 10, 100, DType::kBF16, DType::kBF16, 2},
        {Precision::kFast, 128, 65, 3, 77, DType::kBF16, DType::kBF16, 1},
        {Precision::kFast, 48, 9, 5, 70, DType::kBF16, DType::kBF16, 1},
    };
    for (const testing::AttnCase& c : cases) {
        ASSERT_TRUE(kernels::cuda::attn_tc_wgmma_default(c.D)) << c;
        EXPECT_TRUE(testing::attention_matches_naive(*gpu_, c)) << c;
    }
    kernels::cuda::set_attn_tc_wgmma(-1);
}

// Checkpoint loads ([F14]): row blocks through the two pinned staging buffers arrive in order,
// cover every row once and land where they belong, for a tensor of many blocks and for rows
// wider than the staging (which then grows to one row).
TEST_F(CudaBackendTest, UploadRowsStagesInBlocks) {
    for (auto [R, C] : {std::pair<int64_t, int64_t>{40, int64_t{1} << 18},    // 40 x 1 MiB rows
                        std::pair<int64_t, int64_t>{3, int64_t{5} << 20}}) {  // 20 MiB rows
        Buffer dst = gpu_->alloc_uninitialized(DType::kF32, {R, C});
        int64_t next = 0, calls = 0;
        gpu_->upload_rows(dst.view(), [&](void* host, int64_t row0, int64_t rows) {
            EXPECT_EQ(row0, next);
            EXPECT_GT(rows, 0);
            next = row0 + rows;
            ++calls;
            auto* f = static_cast<float*>(host);
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < C; c += 4099) f[r * C + c] = float(row0 + r) + c * 1e-6f;
                f[r * C + C - 1] = -float(row0 + r);
            }
        });
        EXPECT_EQ(next, R);
        EXPECT_GT(calls, 1) << "a " << R * C * 4 << "-byte tensor in one staging block";
        const std::vector<float> got = fetch_f32(*gpu_, dst.view());
        for (int64_t r = 0; r < R; ++r) {
            for (int64_t c = 0; c < C; c += 4099) {
                ASSERT_EQ(got[r * C + c], float(r) + c * 1e-6f) << r << "," << c;
            }
            ASSERT_EQ(got[r * C + C - 1], -float(r)) << r;
        }
    }
}

#if defined(FOT_CUDA_EMU_BUILD)
// Source lines of `__syncthreads();` statements in FOT_SOURCE_DIR/rel (alone on a line, or
// after an `if constexpr (...)`), all of them or those after a line containing `begin` and
// before one containing `end`; without those whose line contains `unless` (when given).
std::vector<int> barrier_lines(const std::string& rel, const char* begin = nullptr,
                               const char* end = nullptr, const char* unless = nullptr) {
    std::ifstream src(std::string(FOT_SOURCE_DIR) + "/" + rel);
    EXPECT_TRUE(src.good()) << rel;
    std::vector<int> lines;
    std::string text;
    bool inside = begin == nullptr;
    for (int n = 1; std::getline(src, text); ++n) {
        if (begin != nullptr && text.find(begin) != std::string::npos) inside = true;
        if (end != nullptr && text.find(end) != std::string::npos) inside = false;
        auto first = text.find_first_not_of(' ');
        if (first != std::string::npos && text.compare(first, 13, "if constexpr ") == 0) {
            const auto close = text.find(") ", first);
            first = close == std::string::npos ? close : close + 2;
        }
        if (inside && first != std::string::npos &&
            text.compare(first, 16, "__syncthreads();") == 0 &&
            (unless == nullptr || text.find(unless) == std::string::npos))
            lines.push_back(n);
    }
    return lines;
}

// Runs `wrong(i)` for i = 0 .. variants - 1 (e.g. one shape per kernel instance) with the
// barrier at rel:line skipped, under seeds 1..4 (the emulator's thread orders), until one
// reports a wrong result; EXPECTs that one did.
template <typename F>
void expect_barrier_needed(const std::string& rel, int line, F&& wrong, size_t variants) {
    bool caught = false;
    for (size_t i = 0; i < variants && !caught; ++i) {
        for (uint64_t seed = 1; seed <= 4 && !caught; ++seed) {
            emu::set_seed(seed);
            emu::skip_barrier(rel.c_str(), line);
            caught = wrong(i);
            emu::skip_barrier(nullptr, 0);
        }
    }
    EXPECT_TRUE(caught) << "deleting the __syncthreads at " << rel << ":" << line
                        << " went unnoticed";
    emu::set_seed(1);
}
template <typename F>
void expect_barrier_needed(const std::string& rel, int line, F&& wrong) {
    expect_barrier_needed(
        rel, line, [&](size_t) { return wrong(); }, 1);
}

// Deleting any one __syncthreads of the tensor-core kernel must be caught: the emulator runs
// threads in a random order between barriers, completes cp.async copies at random moments
// before their wait, and poisons shared memory, so a missing barrier reads poison or a
// half-written tile. A few seeds per barrier; every barrier must be caught by one of them.
// The check is the conformance suite's fast attention against the naive rules.
TEST(EmulatedFaults, EveryBarrierOfTheTensorCoreKernelIsNeeded) {
    const std::string rel = "kernels/cuda/attention_tc_kernel.cuh";
    const std::vector<int> lines = barrier_lines(rel);
    ASSERT_GE(lines.size(), 3u) << "expected the kernel's barriers in " << rel;

    CudaBackend gpu(0);
    // One 64-query block (one m-tile per warp), then one of 128 queries (two m-tiles), each over
    // 2-3 local + 6 memory key tiles. Every barrier guards something in one of them (the one
    // after the query tile is written only with one m-tile, which loads Q's fragments before
    // the key loop; two re-read them inside it, after its barriers).
    const std::vector<testing::AttnCase> cases = {
        {Precision::kFast, 100, 64, 40, 330, DType::kBF16, DType::kBF16, 1},
        {Precision::kFast, 100, 120, 40, 330, DType::kBF16, DType::kBF16, 1}};
    ASSERT_EQ(kernels::cuda::attn_tc_m_tiles(cases[1].T, cases[1].D), 2);
    for (const testing::AttnCase& c : cases) {
        ASSERT_TRUE(testing::attention_matches_naive(gpu, c)) << "the intact kernel: " << c;
    }
    for (int line : lines) {
        expect_barrier_needed(
            rel, line, [&](size_t i) { return !testing::attention_matches_naive(gpu, cases[i]); },
            cases.size());
    }
}

// The same for the wgmma kernel (the same source, kWg): each of its barriers and each
// wgmma wait (emu_wgmma.h runs a wgmma at the wait that covers it; before it the accumulators
// read as NaN) must be caught when deleted. Source lines of `wg::wait<` in the kernel.
TEST(EmulatedFaults, EveryBarrierAndWgmmaWaitOfTheWgmmaAttentionIsNeeded) {
    const std::string rel = "kernels/cuda/attention_tc_kernel.cuh";
    // Without the barriers the wgmma instances compile out (`if constexpr (!kWg)`).
    std::vector<int> lines = barrier_lines(rel, nullptr, nullptr, "!kWg");
    ASSERT_GE(lines.size(), 2u) << "expected the kernel's barriers in " << rel;
    {
        std::ifstream src(std::string(FOT_SOURCE_DIR) + "/" + rel);
        std::string text;
        int waits = 0;
        for (int n = 1; std::getline(src, text); ++n) {
            if (text.find("wg::wait<") != std::string::npos) {
                lines.push_back(n);
                ++waits;
            }
        }
        ASSERT_EQ(waits, 2) << "expected the kernel's two wgmma waits (Q.K^T, P.V) in " << rel;
    }
    CudaBackend gpu(0);
    kernels::cuda::set_attn_tc_wgmma(1);
    // 64-query blocks over 2-3 local + 6 memory key tiles; head dims 100 and 64.
    const std::vector<testing::AttnCase> cases = {
        {Precision::kFast, 100, 64, 40, 330, DType::kBF16, DType::kBF16, 1},
        {Precision::kFast, 64, 100, 30, 300, DType::kBF16, DType::kBF16, 1}};
    for (const testing::AttnCase& c : cases) {
        ASSERT_TRUE(kernels::cuda::attn_tc_wgmma_default(c.D)) << c;
        ASSERT_TRUE(testing::attention_matches_naive(gpu, c)) << "the intact kernel: " << c;
    }
    for (int line : lines) {
        expect_barrier_needed(
            rel, line, [&](size_t i) { return !testing::attention_matches_naive(gpu, cases[i]); },
            cases.size());
    }
    kernels::cuda::set_attn_tc_wgmma(-1);
}

// q|k|v in the model's layout (split_rows) is one cuBLAS call in prefill, and weights that do
// not lie back to back fall back to one call each; either way the emulator's GEMM gives
// matmul's bits (on a GPU the batched kernel may sum in another order: the conformance suite's
// MatmulGroupOfSplitRowsMatchesEachMatmul holds both to a GEMM tolerance).
TEST(EmulatedCuda, MatmulGroupOfSplitRowsIsOneLaunch) {
    CudaBackend gpu(0);
    const int64_t T = 6, K = 64, N = 24;
    std::vector<Buffer> ws = split_rows(gpu.alloc(DType::kBF16, {3 * N, K}), 3);
    // The unbatchable layout: rows of one allocation at uneven offsets (separate allocations
    // may well land one stride apart, which is the batched layout).
    Buffer w_all = gpu.alloc(DType::kBF16, {3 * N + 11, K}),
           o_all = gpu.alloc(DType::kF32, {3 * T + 5, N});
    const int64_t w_rows[3] = {0, N + 3, 2 * N + 11}, o_rows[3] = {0, T + 1, 2 * T + 5};
    std::vector<TensorView> apart, sep;
    for (int i = 0; i < 3; ++i) {
        const auto wv = random_floats(N * K, 170 + i);
        std::vector<unsigned char> bytes(wv.size() * 2);
        convert_from_f32(wv.data(), bytes.data(), DType::kBF16, wv.size());
        gpu.upload(ws[i].view(), bytes.data(), bytes.size());
        TensorView w = w_all.view(), o = o_all.view();
        w.data = static_cast<char*>(w.data) + w_rows[i] * K * 2;
        w.shape = {N, K};
        o.data = static_cast<char*>(o.data) + o_rows[i] * N * 4;
        o.shape = {T, N};
        gpu.upload(w, bytes.data(), bytes.size());
        apart.push_back(w);
        sep.push_back(o);
    }
    Buffer x = make_buffer(gpu, DType::kBF16, {T, K}, random_floats(T * K, 180, -2.f, 2.f));
    std::vector<Buffer> grp = split_rows(gpu.alloc(DType::kF32, {3 * T, N}), 3);
    uint64_t before = emu::launches();
    gpu.matmul_group(x.view(), {{grp[0].view(), ws[0].view()},
                                {grp[1].view(), ws[1].view()},
                                {grp[2].view(), ws[2].view()}});
    EXPECT_EQ(emu::launches() - before, 1u) << "split_rows layout: one batched GEMM";
    before = emu::launches();
    gpu.matmul_group(x.view(), {{sep[0], apart[0]}, {sep[1], apart[1]}, {sep[2], apart[2]}});
    EXPECT_EQ(emu::launches() - before, 3u) << "uneven weights: one GEMM each";
    // Two matrices are always one stride apart; with a gap between them (as between two
    // separate allocations) they are not the model's layout either: the path must not depend
    // on where an allocator put them.
    before = emu::launches();
    gpu.matmul_group(x.view(), {{sep[0], apart[0]}, {sep[1], apart[1]}});
    EXPECT_EQ(emu::launches() - before, 2u) << "weights N + 3 rows apart: one GEMM each";
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(fetch_bytes(gpu, grp[i].view()), fetch_bytes(gpu, sep[i])) << i;
}

// A programmatic dependent launch (kernels/cuda/pdl.cuh) of a kernel that does not call
// pdl_start() in every thread aborts: on a GPU such a kernel could touch memory before the
// previous kernel finished. Every launch_pdl of the other emulated tests passes this check.
__global__ void writes_with_pdl_start(float* out) {
    kernels::cuda::pdl_start();
    out[threadIdx.x] = 1.f;
}
__global__ void writes_without_pdl_start(float* out) {
    out[threadIdx.x] = 2.f;
}
TEST(EmulatedFaults, AProgrammaticLaunchOfAKernelWithoutPdlStartAborts) {
    ASSERT_TRUE(kernels::cuda::pdl_enabled()) << "FOT_CUDA_PDL=0 is set";
    // Earlier tests of this binary may have started CPU worker threads: re-run this test in a
    // fresh process for the death check instead of forking this one.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    std::vector<float> out(64, 0.f);
    kernels::cuda::launch_pdl(writes_with_pdl_start, dim3(1), dim3(64), 0, nullptr, out.data());
    EXPECT_EQ(out[63], 1.f);
    EXPECT_DEATH(kernels::cuda::launch_pdl(writes_without_pdl_start, dim3(1), dim3(64), 0, nullptr,
                                           out.data()),
                 "did not call pdl_start");
    // The ordinary launch of the same kernel is fine.
    emu::Launch(1, 64)(writes_without_pdl_start, out.data());
    EXPECT_EQ(out[63], 2.f);
}

// The split GEMV's one barrier (the slices' partial sums in shared memory, then slice 0 adds
// them): a copy without it must give other bits for some thread order.
TEST_F(CudaBackendTest, TheSplitGemvNeedsItsBarrier) {
    const std::string rel = "kernels/cuda/gemv.cu";
    const std::vector<int> lines =
        barrier_lines(rel, "gemv_kernel(Targets<W> tg", "forced_split()");
    ASSERT_EQ(lines.size(), 1u) << "expected the one barrier of the split-K sum in " << rel;
    const int64_t T = 2, N = 24, K = 3200;  // split 4: two row pairs per block
    ASSERT_EQ(kernels::cuda::gemv_split(DType::kBF16, K), 4);
    Buffer x = make_buffer(*gpu_, DType::kBF16, {T, K}, random_floats(T * K, 180));
    Buffer w = make_buffer(*gpu_, DType::kBF16, {N, K}, random_floats(N * K, 181));
    auto run = [&] {
        Buffer o = gpu_->alloc(DType::kF32, {T, N});
        kernels::cuda::gemv(o.as<float>(), x.data(), DType::kBF16, w.data(), DType::kBF16, T, N, K,
                            gpu_->stream().handle);
        return fetch_bytes(*gpu_, o.view());
    };
    const auto want = run();
    expect_barrier_needed(rel, lines[0], [&] { return run() != want; });
}

// The add + RMSNorm epilogue's barrier between the ticket and its reading: without it the
// block's other threads may read the shared flag (poisoned) before thread 0 writes it, so
// blocks that are not last add and norm a half-written proj, or a block's threads disagree
// about being last and the emulator reports a barrier deadlock. Either ends the process below
// (a death test, run in a fresh process). (The barrier before the ticket orders this block's
// proj writes before the ticket; the emulator runs blocks one after another, so it cannot
// show that one.)
TEST_F(CudaBackendTest, TheAddRmsNormEpilogueNeedsItsTicketBarrier) {
    const std::string rel = "kernels/cuda/gemv.cu";
    const std::vector<int> lines =
        barrier_lines(rel, "add_rmsnorm_last_block(const Targets<W>& tg", "// Launch bounds");
    ASSERT_EQ(lines.size(), 2u) << "expected the epilogue's two barriers in " << rel;
    const int64_t T = 1, C = 300, K = 96;  // 19 blocks
    Buffer a = make_buffer(*gpu_, DType::kBF16, {T, K}, random_floats(T * K, 190));
    Buffer w = make_buffer(*gpu_, DType::kBF16, {C, K}, random_floats(C * K, 191));
    Buffer nw = make_buffer(*gpu_, DType::kF32, {C}, random_floats(C, 192, 0.5f, 1.5f));
    const auto xv = random_floats(T * C, 193, -3.f, 3.f);
    auto run = [&] {
        Buffer x = make_buffer(*gpu_, DType::kF32, {T, C}, xv);
        Buffer proj = gpu_->alloc(DType::kF32, {T, C}), xn = gpu_->alloc(DType::kBF16, {T, C});
        gpu_->matmul_add_rmsnorm(xn.view(), x.view(), proj.view(), a.view(), w.view(), nw.view(),
                                 1e-6f);
        return std::make_pair(fetch_bytes(*gpu_, x.view()), fetch_bytes(*gpu_, xn.view()));
    };
    const auto want = run();
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            for (uint64_t seed = 1; seed <= 4; ++seed) {
                emu::set_seed(seed);
                emu::skip_barrier(rel.c_str(), lines[1]);
                if (run() != want) {
                    std::fprintf(stderr, "wrong result without the barrier\n");
                    std::abort();
                }
            }
        },
        "deadlock|wrong result");
    EXPECT_EQ(run(), want) << "the intact kernel again";
}

// The same for the top-k scoring kernel's barriers (the filtered path runs it twice, sampling
// and filtering; the score-rows path once).
TEST_F(CudaTopkPaths, EveryBarrierOfTheTopkScoringKernelIsNeeded) {
    // The fp32 tile kernel (f32 keys) and the tensor-core one (bf16 keys: its stages arrive by
    // cp.async, and the next tile's copy overwrites the stage read two tiles before).
    using kernels::cuda::TopkPath;
    const std::string rel = "kernels/cuda/topk.cu";
    struct Kernel {
        const char *begin, *end;
        DType dtype;
    };
    for (const Kernel& kern :
         {Kernel{"score_kernel(Epi epi", "struct RowsOut {", DType::kF32},
          Kernel{"score_tc_kernel(Epi epi", "int score_tc_dp(", DType::kBF16}}) {
        SCOPED_TRACE(kern.begin);
        const std::vector<int> lines = barrier_lines(rel, kern.begin, kern.end);
        ASSERT_EQ(lines.size(), 2u) << "expected the two barriers of the key-tile loop in " << rel;
        const TopkPathCase c{1, 64, 1100, 64, 16, kern.dtype, false, {}};
        const Result want = run(c, TopkPath::kScoreRowsOneBlock, c.T);
        ASSERT_EQ(run(c, TopkPath::kFiltered, c.T).r, want.r) << "the intact kernel";
        for (int line : lines) {
            expect_barrier_needed(rel, line, [&] {
                const Result got = run(c, TopkPath::kFiltered, c.T);
                return got.r != want.r || fetch_bits(got.s) != fetch_bits(want.s);
            });
        }
    }
}

#endif

}  // namespace
}  // namespace fot
