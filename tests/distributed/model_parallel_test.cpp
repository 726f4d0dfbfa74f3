// The whole model under every tp x mp layout the world size allows (run by ctest under mpirun
// with 2 and 4 ranks): golden logits within 1e-4, greedy tokens across flushes identical to
// the reference, bitwise-identical outputs on every rank of a group, dense and top-k.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "parallel/mpi_session.h"
#include "runtime/jobs/generate_job.h"
#include "runtime/jobs/session.h"
#include "tests/model/golden_checks.h"

namespace fot {
namespace {

using testing::forward_all;
using testing::golden_dir;
using testing::read_f32;
using testing::read_ids;
using testing::read_json;

struct Layout {
    int tp, mp;
};

std::vector<Layout> layouts(int world) {
    std::vector<Layout> out;
    for (int tp = 1; tp <= world; ++tp) {
        for (int mp = 1; tp * mp <= world; ++mp) {
            if (world % (tp * mp) == 0) out.push_back({tp, mp});
        }
    }
    return out;
}

// True on every rank when all ranks of my group hold exactly `v` (compared over the world).
bool identical_in_group(parallel::Communicator& world, const Session& s,
                        const std::vector<float>& v) {
    const int P = world.size();
    std::vector<float> all(v.size() * P);
    world.all_gather(parallel::host_view(const_cast<float*>(v.data()), int64_t(v.size())),
                     parallel::host_view(all.data(), int64_t(all.size())));
    int ok = 1;
    for (int r : s.world.group_ranks()) {
        if (!std::equal(v.begin(), v.end(), all.begin() + r * v.size())) ok = 0;
    }
    std::vector<int> flag{ok};
    world.all_reduce(parallel::host_view(flag.data(), 1), parallel::ReduceOp::kMin);
    return flag[0] == 1;
}

class ModelParallel : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override { world_ = parallel::make_mpi_world_communicator(); }
    std::unique_ptr<parallel::Communicator> world_;
};

TEST_P(ModelParallel, LogitsMatchGoldenAndAreIdenticalInEachGroup) {
    const std::string dir = golden_dir(GetParam());
    const auto ids = read_ids(dir + "/input_ids.json");
    const auto ref = read_f32(dir + "/logits.f32");
    for (Layout l : layouts(world_->size())) {
        for (Retrieval r : {Retrieval::kDense, Retrieval::kTopK}) {
            RunConfig run;
            run.model = dir;
            run.threads = 1;
            run.parallel.tp = l.tp;
            run.parallel.mp = l.mp;
            run.memory.retrieval = r;
            run.memory.k = 256;  // >= memory (at most 236 entries): top-k equals dense
            auto s = open_session(run, *world_);
            const auto logits = forward_all(*s, ids);
            EXPECT_LT(testing::max_abs_diff(logits, ref), 1e-4)
                << "tp " << l.tp << " mp " << l.mp << " " << retrieval_name(r);
            EXPECT_TRUE(identical_in_group(*world_, *s, logits))
                << "tp " << l.tp << " mp " << l.mp << " " << retrieval_name(r);
            // Memory is split by blocks: my shard holds about 1/mp of it.
            EXPECT_LE(s->seq->memory_tokens_local(), s->seq->memory_tokens());
        }
    }
}

TEST_P(ModelParallel, GreedyTokensAcrossFlushesEqualSingleRank) {
    const std::string dir = golden_dir(GetParam());
    const auto ids = read_ids(dir + "/input_ids.json");
    auto greedy = read_json(dir + "/greedy.json");
    for (Layout l : layouts(world_->size())) {
        RunConfig run;
        run.model = dir;
        run.threads = 1;
        run.parallel.tp = l.tp;
        run.parallel.mp = l.mp;
        auto s = open_session(run, *world_);
        GenerateOptions go;
        go.max_new_tokens = 16;
        go.ignore_eos = true;
        GenerateResult res = run_generate_job(*s, ids, go);
        EXPECT_EQ(res.new_tokens, greedy["new_tokens"].get<std::vector<int32_t>>())
            << "tp " << l.tp << " mp " << l.mp;
        std::vector<float> as_f(res.new_tokens.begin(), res.new_tokens.end());
        EXPECT_TRUE(identical_in_group(*world_, *s, as_f));
    }
}

INSTANTIATE_TEST_SUITE_P(Golden, ModelParallel, ::testing::Values("case_a", "case_e", "case_f"));

}  // namespace
}  // namespace fot
