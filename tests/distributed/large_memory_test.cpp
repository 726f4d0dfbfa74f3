// `slow`: 1M memory entries of one memory layer (bf16), split by blocks over the ranks.
// Planted keys that score far above the rest must all be found by distributed top-k for
// every (head, query), and distributed dense attention must equal a single-rank computation.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "parallel/mpi_session.h"
#include "parallel/self_communicator.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/core/timer.h"
#include "runtime/memory/retriever.h"
#include "runtime/memory/topk_retriever.h"

namespace fot {
namespace {

constexpr int64_t kEntries = 1 << 20, kBlock = 4096, kH = 4, kD = 16, kT = 4, kK = 32;
constexpr int kPlanted = 24;

TensorView view_of(std::vector<float>& v, Shape s) {
    return {v.data(), DType::kF32, std::move(s), Device::cpu()};
}

// Global positions of the planted keys (spread over many blocks, hence over every rank).
std::vector<int64_t> planted_positions() {
    std::vector<int64_t> p;
    for (int i = 0; i < kPlanted; ++i) p.push_back((i * 2654435761LL) % kEntries);
    return p;
}

void make_block(int64_t b, const std::vector<float>& qdir, const std::set<int64_t>& planted,
                std::vector<float>* k, std::vector<float>* v) {
    std::mt19937 rng(static_cast<uint32_t>(b) * 7919u + 1);
    std::normal_distribution<float> nd(0.f, 1.f);
    k->resize(kBlock * kH * kD);
    v->resize(kBlock * kH * kD);
    for (auto& x : *k) x = nd(rng);
    for (auto& x : *v) x = nd(rng);
    for (int64_t r = 0; r < kBlock; ++r) {
        if (!planted.count(b * kBlock + r)) continue;
        for (int64_t h = 0; h < kH; ++h) {
            for (int64_t d = 0; d < kD; ++d) (*k)[(r * kH + h) * kD + d] = 8.f * qdir[h * kD + d];
        }
    }
}

TEST(LargeMemory, MillionEntriesTopkFindsPlantedKeysAndDenseMatchesSingleRank) {
    auto world = parallel::make_mpi_world_communicator();
    const int R = world->size(), me = world->rank();
    CpuBackend backend(1);
    Timer timer;
    // Queries share one direction per head (plus noise), which the planted keys follow.
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> qdir(kH * kD), q(kT * kH * kD);
    for (auto& x : qdir) x = nd(rng);
    for (int64_t t = 0; t < kT; ++t) {
        for (int64_t i = 0; i < kH * kD; ++i) q[t * kH * kD + i] = qdir[i] + 0.1f * nd(rng);
    }
    const auto planted_v = planted_positions();
    const std::set<int64_t> planted(planted_v.begin(), planted_v.end());

    MemoryStore mine(backend, 1, kH, kD, DType::kBF16, 0);
    mine.reserve(kEntries / R + kBlock);
    std::vector<float> k, v;
    for (int64_t b = 0; b < kEntries / kBlock; ++b) {
        if (b % R != me) continue;
        make_block(b, qdir, planted, &k, &v);
        mine.append(0, view_of(k, {kBlock, kH * kD}), view_of(v, {kBlock, kH * kD}), b * kBlock);
    }
    const float scale = 1.f / std::sqrt(float(kD));

    // Top-k: every planted key survives for every (head, query).
    TopKRetriever topk(backend, *world, {kH, kD, kT}, kK);
    std::vector<float> part(kH * kT * (kD + 2));
    backend.attn_partial_init(view_of(part, {kH, kT, kD + 2}));
    topk.attend(
        {view_of(part, {kH, kT, kD + 2}), view_of(q, {kT, kH * kD}), &mine, 0, scale, nullptr});
    std::vector<int64_t> found(kH * kT * kK, -1);
    const float* cs = topk.candidate_scores().as<float>();
    const int64_t* cp = topk.candidate_positions().as<int64_t>();
    const float* ts = topk.threshold_scores().as<float>();
    const int64_t* tpos = topk.threshold_positions().as<int64_t>();
    for (int64_t i = 0; i < kH * kT * kK; ++i) {
        const int64_t o = i / kK;
        if (cp[i] >= 0 && (cs[i] > ts[o] || (cs[i] == ts[o] && cp[i] <= tpos[o]))) found[i] = cp[i];
    }
    std::vector<int64_t> all(found.size() * R);
    world->all_gather(parallel::host_view(found.data(), int64_t(found.size())),
                      parallel::host_view(all.data(), int64_t(all.size())));
    for (int64_t o = 0; o < kH * kT; ++o) {
        std::set<int64_t> got;
        for (int r = 0; r < R; ++r) {
            for (int64_t j = 0; j < kK; ++j) {
                const int64_t p = all[r * kH * kT * kK + o * kK + j];
                if (p >= 0) got.insert(p);
            }
        }
        EXPECT_EQ(got.size(), static_cast<size_t>(kK));
        for (int64_t p : planted) EXPECT_TRUE(got.count(p)) << "planted key " << p << " missed";
    }

    // Dense: distributed vs one rank holding all 1M entries (rank 0 computes the reference).
    auto dense = make_memory_retriever({"dense", 1}, backend, *world, {kH, kD, kT});
    std::vector<float> dpart(kH * kT * (kD + 2)), dout(kT * kH * kD);
    backend.attn_partial_init(view_of(dpart, {kH, kT, kD + 2}));
    dense->attend(
        {view_of(dpart, {kH, kT, kD + 2}), view_of(q, {kT, kH * kD}), &mine, 0, scale, nullptr});
    backend.attn_partial_finalize(view_of(dout, {kT, kH * kD}), view_of(dpart, {kH, kT, kD + 2}));
    if (me == 0) {
        MemoryStore full(backend, 1, kH, kD, DType::kBF16, 0);
        full.reserve(kEntries);
        for (int64_t b = 0; b < kEntries / kBlock; ++b) {
            make_block(b, qdir, planted, &k, &v);
            full.append(0, view_of(k, {kBlock, kH * kD}), view_of(v, {kBlock, kH * kD}),
                        b * kBlock);
        }
        parallel::SelfCommunicator self;
        auto single = make_memory_retriever({"dense", 1}, backend, self, {kH, kD, kT});
        std::vector<float> spart(kH * kT * (kD + 2)), sout(kT * kH * kD);
        backend.attn_partial_init(view_of(spart, {kH, kT, kD + 2}));
        single->attend({view_of(spart, {kH, kT, kD + 2}), view_of(q, {kT, kH * kD}), &full, 0,
                        scale, nullptr});
        backend.attn_partial_finalize(view_of(sout, {kT, kH * kD}),
                                      view_of(spart, {kH, kT, kD + 2}));
        for (size_t i = 0; i < dout.size(); ++i) EXPECT_NEAR(dout[i], sout[i], 1e-5);
        std::printf("large memory test: %d ranks, %lld entries, %.1f s\n", R,
                    static_cast<long long>(kEntries), timer.seconds());
    }
    world->barrier();
}

}  // namespace
}  // namespace fot
