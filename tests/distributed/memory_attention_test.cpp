// Distributed memory attention against brute force (run under mpirun with 1, 2 and 4 ranks;
// mp = world size): exact top-k selects exactly the brute-force top-K set (tie-aware), top-k
// output equals softmax over that set, dense equals the single-rank computation, and every
// rank ends with bitwise-identical results. The `slow` case holds 1M memory entries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "parallel/mpi_session.h"
#include "parallel/self_communicator.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/memory/retriever.h"
#include "runtime/memory/topk_retriever.h"

namespace fot {
namespace {

struct Block {
    int64_t begin, length;
};

// Keys/values of one block: rows [length, H*D]. Keys come from a small pool so that many
// scores tie exactly; `planted` rows get a key aligned with every query.
struct Data {
    int64_t H, D;
    std::vector<float> pool;
    void block(int64_t b, int64_t len, std::vector<float>* k, std::vector<float>* v) const {
        std::mt19937 rng(1000 + static_cast<uint32_t>(b));
        std::uniform_int_distribution<int> pick(0, static_cast<int>(pool.size() / D) - 1);
        std::normal_distribution<float> nd(0.f, 1.f);
        k->resize(len * H * D);
        v->resize(len * H * D);
        for (int64_t r = 0; r < len * H; ++r) {
            const int p = pick(rng);
            std::copy_n(pool.begin() + p * D, D, k->begin() + r * D);
            for (int64_t d = 0; d < D; ++d) (*v)[r * D + d] = nd(rng);
        }
    }
};

std::vector<float> randn(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.f, 1.f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

TensorView view_of(std::vector<float>& v, Shape s) {
    return {v.data(), DType::kF32, std::move(s), Device::cpu()};
}

class DistributedMemory : public ::testing::Test {
  protected:
    void SetUp() override { world_ = parallel::make_mpi_world_communicator(); }
    std::unique_ptr<parallel::Communicator> world_;
    CpuBackend backend_{1};
};

TEST_F(DistributedMemory, TopkSelectsTheBruteForceSetAndDenseMatchesSingleRank) {
    const int R = world_->size(), me = world_->rank();
    const int64_t H = 2, D = 8, T = 3, K = 23;
    Data data{H, D, randn(6 * D, 7)};
    std::vector<Block> blocks;
    int64_t total = 0;
    for (int64_t b = 0; b < 9; ++b) {
        const int64_t len = 20 + (b * 17) % 40;
        blocks.push_back({total, len});
        total += len;
    }
    // My shard (block b on rank b % R) and, for the reference, everything.
    MemoryStore mine(backend_, 1, H, D, DType::kF32, 0), all(backend_, 1, H, D, DType::kF32, 0);
    std::vector<float> allk, allv;  // [total, H*D]
    for (size_t b = 0; b < blocks.size(); ++b) {
        std::vector<float> k, v;
        data.block(b, blocks[b].length, &k, &v);
        auto kv = view_of(k, {blocks[b].length, H * D}), vv = view_of(v, {blocks[b].length, H * D});
        if (static_cast<int>(b) % R == me) mine.append(0, kv, vv, blocks[b].begin);
        all.append(0, kv, vv, blocks[b].begin);
        allk.insert(allk.end(), k.begin(), k.end());
        allv.insert(allv.end(), v.begin(), v.end());
    }
    auto q = randn(T * H * D, 99);
    const float scale = 1.f / std::sqrt(float(D));

    // ---- top-k ----
    TopKRetriever topk(backend_, *world_, {H, D, T}, K);
    std::vector<float> part(H * T * (D + 2)), out(T * H * D);
    backend_.attn_partial_init(view_of(part, {H, T, D + 2}));
    topk.attend({view_of(part, {H, T, D + 2}), view_of(q, {T, H * D}), &mine, 0, scale, nullptr});
    backend_.attn_partial_finalize(view_of(out, {T, H * D}), view_of(part, {H, T, D + 2}));

    // The survivors on this rank, gathered from every rank.
    std::vector<int64_t> kept(H * T * K, -1);
    const float* cs = topk.candidate_scores().as<float>();
    const int64_t* cp = topk.candidate_positions().as<int64_t>();
    const int64_t* cr = topk.candidate_rows().as<int64_t>();
    const float* ts = topk.threshold_scores().as<float>();
    const int64_t* tpos = topk.threshold_positions().as<int64_t>();
    for (int64_t i = 0; i < H * T; ++i) {
        for (int64_t j = 0; j < K; ++j) {
            const int64_t c = i * K + j;
            if (cr[c] >= 0 && (cs[c] > ts[i] || (cs[c] == ts[i] && cp[c] <= tpos[i]))) {
                kept[c] = cp[c];
            }
        }
    }
    std::vector<int64_t> kept_all(kept.size() * R);
    world_->all_gather(parallel::host_view(kept.data(), int64_t(kept.size())),
                       parallel::host_view(kept_all.data(), int64_t(kept_all.size())));

    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            // Brute force over all entries in double, order (score desc, position asc).
            std::vector<std::pair<float, int64_t>> c;
            for (int64_t j = 0; j < total; ++j) {
                float dot = 0.f;
                for (int64_t d = 0; d < D; ++d)
                    dot += q[(t * H + h) * D + d] * allk[(j * H + h) * D + d];
                c.push_back({dot * scale, j});
            }
            std::sort(c.begin(), c.end(), [](auto& a, auto& b) {
                return a.first != b.first ? a.first > b.first : a.second < b.second;
            });
            std::multiset<int64_t> want, got;
            for (int64_t i = 0; i < K; ++i) want.insert(c[i].second);
            for (int r = 0; r < R; ++r) {
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t p = kept_all[r * H * T * K + (h * T + t) * K + j];
                    if (p >= 0) got.insert(p);
                }
            }
            EXPECT_EQ(got, want) << "h " << h << " t " << t << " R " << R;
            // Output = softmax over the selected set.
            double m = c[0].first, l = 0;
            std::vector<double> o(D, 0.0);
            for (int64_t i = 0; i < K; ++i) {
                const double p = std::exp(c[i].first - m);
                l += p;
                for (int64_t d = 0; d < D; ++d) o[d] += p * allv[(c[i].second * H + h) * D + d];
            }
            for (int64_t d = 0; d < D; ++d) {
                EXPECT_NEAR(out[(t * H + h) * D + d], o[d] / l, 1e-5);
            }
        }
    }

    // ---- dense: distributed == single-rank (all entries on one rank) ----
    auto dense = make_memory_retriever({"dense", 1}, backend_, *world_, {H, D, T});
    std::vector<float> dpart(H * T * (D + 2)), dout(T * H * D);
    backend_.attn_partial_init(view_of(dpart, {H, T, D + 2}));
    dense->attend(
        {view_of(dpart, {H, T, D + 2}), view_of(q, {T, H * D}), &mine, 0, scale, nullptr});
    backend_.attn_partial_finalize(view_of(dout, {T, H * D}), view_of(dpart, {H, T, D + 2}));
    parallel::SelfCommunicator self;
    auto single = make_memory_retriever({"dense", 1}, backend_, self, {H, D, T});
    std::vector<float> spart(H * T * (D + 2)), sout(T * H * D);
    backend_.attn_partial_init(view_of(spart, {H, T, D + 2}));
    single->attend(
        {view_of(spart, {H, T, D + 2}), view_of(q, {T, H * D}), &all, 0, scale, nullptr});
    backend_.attn_partial_finalize(view_of(sout, {T, H * D}), view_of(spart, {H, T, D + 2}));
    for (size_t i = 0; i < dout.size(); ++i) EXPECT_NEAR(dout[i], sout[i], 1e-5);

    // Bitwise identical on every rank.
    std::vector<float> both(out);
    both.insert(both.end(), dout.begin(), dout.end());
    std::vector<float> gathered(both.size() * R);
    world_->all_gather(parallel::host_view(both.data(), int64_t(both.size())),
                       parallel::host_view(gathered.data(), int64_t(gathered.size())));
    for (int r = 1; r < R; ++r) {
        EXPECT_TRUE(std::equal(both.begin(), both.end(), gathered.begin() + r * both.size()));
    }
}

}  // namespace
}  // namespace fot
