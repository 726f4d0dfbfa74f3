#include "parallel/world.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>
#include <string>

#include "tests/parallel/scoped_env.h"

namespace fot::parallel {
namespace {

// Every valid layout up to 24 ranks.
struct Layout {
    int p, tp, mp;
};
std::vector<Layout> all_layouts() {
    std::vector<Layout> out;
    for (int p = 1; p <= 24; ++p)
        for (int tp = 1; tp <= p; ++tp)
            for (int mp = 1; tp * mp <= p; ++mp)
                if (p % (tp * mp) == 0) out.push_back({p, tp, mp});
    return out;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(World, SingleRankDefaults) {
    World w;
    EXPECT_EQ(w.world_size(), 1);
    EXPECT_EQ(w.dp(), 1);
    EXPECT_EQ(w.tp_rank(), 0);
    EXPECT_TRUE(w.is_group_leader());
    EXPECT_TRUE(w.is_coordinator());
    EXPECT_EQ(w.tp_group_ranks(), std::vector<int>{0});
    EXPECT_EQ(w.dp_leader_ranks(), std::vector<int>{0});
}

TEST(World, CoordinatesMatchTheDocumentedRankOrder) {
    // P = 8, tp 2, mp 2, dp 2: tp fastest, then mp, then dp.
    const int expect[8][3] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {1, 1, 0},
                              {0, 0, 1}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}};
    for (int r = 0; r < 8; ++r) {
        World w(8, r, 2, 2);
        EXPECT_EQ(w.tp_rank(), expect[r][0]) << r;
        EXPECT_EQ(w.mp_rank(), expect[r][1]) << r;
        EXPECT_EQ(w.dp_rank(), expect[r][2]) << r;
    }
    World w5(8, 5, 2, 2);
    EXPECT_EQ(w5.tp_group_ranks(), (std::vector<int>{4, 5}));
    EXPECT_EQ(w5.mp_group_ranks(), (std::vector<int>{5, 7}));
    EXPECT_EQ(w5.group_ranks(), (std::vector<int>{4, 5, 6, 7}));
    EXPECT_EQ(w5.dp_leader_ranks(), (std::vector<int>{0, 4}));
    EXPECT_EQ(w5.group_leader(), 4);
    EXPECT_EQ(w5.describe(), "rank 5/8: tp 1/2, mp 0/2, dp 1/2, device 0");
}

TEST(World, EveryLayoutPartitionsTheRanks) {
    for (const Layout& l : all_layouts()) {
        SCOPED_TRACE(::testing::Message() << "P=" << l.p << " tp=" << l.tp << " mp=" << l.mp);
        std::set<std::vector<int>> tp_groups, mp_groups, groups;
        std::set<int> leaders;
        for (int r = 0; r < l.p; ++r) {
            World w(l.p, r, l.tp, l.mp);
            ASSERT_EQ(w.dp() * w.tp() * w.mp(), l.p);
            ASSERT_EQ(w.rank_of(w.tp_rank(), w.mp_rank(), w.dp_rank()), r);
            EXPECT_EQ(w.group(), w.dp_rank());
            EXPECT_EQ(w.group_size(), l.tp * l.mp);
            auto tpg = w.tp_group_ranks();
            auto mpg = w.mp_group_ranks();
            auto grp = w.group_ranks();
            // My position in each group is my coordinate; groups are sorted.
            ASSERT_EQ(static_cast<int>(tpg.size()), l.tp);
            ASSERT_EQ(static_cast<int>(mpg.size()), l.mp);
            EXPECT_EQ(tpg[w.tp_rank()], r);
            EXPECT_EQ(mpg[w.mp_rank()], r);
            EXPECT_TRUE(std::is_sorted(tpg.begin(), tpg.end()));
            EXPECT_TRUE(std::is_sorted(mpg.begin(), mpg.end()));
            // A tp group is tp consecutive ranks (one node).
            EXPECT_EQ(tpg.back() - tpg.front(), l.tp - 1);
            for (int x : tpg) EXPECT_EQ(World(l.p, x, l.tp, l.mp).tp_group_ranks(), tpg);
            for (int x : mpg) EXPECT_EQ(World(l.p, x, l.tp, l.mp).mp_group_ranks(), mpg);
            for (int x : grp) EXPECT_EQ(World(l.p, x, l.tp, l.mp).group(), w.group());
            EXPECT_EQ(w.is_group_leader(), w.group_leader() == r);
            EXPECT_EQ(w.dp_leader_ranks()[w.group()], w.group_leader());
            if (w.is_group_leader()) leaders.insert(r);
            tp_groups.insert(tpg);
            mp_groups.insert(mpg);
            groups.insert(grp);
        }
        EXPECT_EQ(static_cast<int>(tp_groups.size()), l.p / l.tp);
        EXPECT_EQ(static_cast<int>(mp_groups.size()), l.p / l.mp);
        EXPECT_EQ(static_cast<int>(groups.size()), l.p / (l.tp * l.mp));
        World w0(l.p, 0, l.tp, l.mp);
        auto dl = w0.dp_leader_ranks();
        EXPECT_EQ(std::set<int>(dl.begin(), dl.end()), leaders);
    }
}

TEST(World, MemoryBlocksGoRoundRobinOverMpRanks) {
    for (int mp : {1, 2, 3, 4}) {
        for (int r = 0; r < mp * 2; ++r) {
            World w(mp * 2, r, 2, mp);
            int owned = 0;
            for (int64_t b = 0; b < 5 * mp; ++b) {
                EXPECT_EQ(w.memory_block_owner(b), b % mp);
                owned += w.owns_memory_block(b);
            }
            EXPECT_EQ(owned, 5);  // every mp rank owns the same number of blocks
        }
    }
    EXPECT_EQ(World(4, 0, 1, 4).memory_block_owner(int64_t{1} << 40), 0);
    EXPECT_THROW(World(4, 0, 1, 4).memory_block_owner(-1), Error);
}

TEST(World, InvalidLayoutsNameTheNumbers) {
    EXPECT_NE(error_of([] {
                  World(4, 0, 3, 1);
              }).find("--tp 3 x --mp 1 = 3 does not divide the world size 4"),
              std::string::npos);
    EXPECT_NE(error_of([] {
                  World(6, 0, 2, 2);
              }).find("--tp 2 x --mp 2 = 4 does not divide the world size 6"),
              std::string::npos);
    // The fix: the next world size that fits.
    EXPECT_NE(
        error_of([] { World(6, 0, 2, 2); }).find("run mpirun -np 8 (or another multiple of 4)"),
        std::string::npos);
    EXPECT_NE(
        error_of([] { World(1, 0, 2, 1); }).find("run mpirun -np 2 (or another multiple of 2)"),
        std::string::npos);
    EXPECT_NE(error_of([] { World(4, 0, 0, 1); }).find("--tp 0 must be >= 1"), std::string::npos);
    EXPECT_NE(error_of([] { World(4, 0, 1, -2); }).find("--mp -2 must be >= 1"), std::string::npos);
    EXPECT_NE(error_of([] { World(4, 4, 1, 1); }).find("rank 4 is out of range"),
              std::string::npos);
    EXPECT_THROW(World(0, 0, 1, 1), Error);
    EXPECT_THROW(World(2, -1, 1, 1), Error);
    EXPECT_THROW(World(2, 0, 1, 1, -1), Error);
    World w(8, 3, 2, 2);
    EXPECT_THROW(w.rank_of(2, 0, 0), Error);
    EXPECT_THROW(w.rank_of(0, 2, 0), Error);
    EXPECT_THROW(w.rank_of(0, 0, 2), Error);
}

TEST(World, ValidateChecksTheTensorParallelSplit) {
    const ModelDims tiny{8, 96, 32000};
    EXPECT_NO_THROW(World(4, 0, 4, 1).validate(tiny));
    EXPECT_NO_THROW(World(4, 0, 1, 4).validate(ModelDims{5, 7, 11}));  // mp has no constraint
    EXPECT_EQ(error_of([&] {
                  World(3, 0, 3, 1).validate(tiny);
              }).rfind("--tp 3 does not divide num_attention_heads=8", 0),
              0u);
    std::string both = error_of([] { World(2, 0, 2, 1).validate(ModelDims{8, 101, 32001}); });
    EXPECT_NE(both.find("--tp 2 does not divide intermediate_size=101, vocab_size=32001"),
              std::string::npos)
        << both;
    EXPECT_EQ(both.find("num_attention_heads"), std::string::npos);
    EXPECT_NE(error_of([] {
                  World(1, 0, 1, 1).validate(ModelDims{0, 8, 8});
              }).find("num_attention_heads=0"),
              std::string::npos);
}

using testing::ScopedEnv;

TEST(World, LocalRankFromTheLaunchersEnvironment) {
    ScopedEnv a("OMPI_COMM_WORLD_LOCAL_RANK", nullptr), b("MPI_LOCALRANKID", nullptr),
        c("SLURM_LOCALID", nullptr);
    EXPECT_EQ(local_rank_from_env(), -1);
    {
        ScopedEnv s("SLURM_LOCALID", "2");
        EXPECT_EQ(local_rank_from_env(), 2);
        ScopedEnv o("OMPI_COMM_WORLD_LOCAL_RANK", "3");  // Open MPI's wins
        EXPECT_EQ(local_rank_from_env(), 3);
    }
    ScopedEnv bad("SLURM_LOCALID", "x1");
    EXPECT_NE(error_of([] { local_rank_from_env(); }).find("SLURM_LOCALID=x1"), std::string::npos);
    World w(4, 1, 1, 1, 3);
    EXPECT_EQ(w.device_index(), 3);
}

TEST(World, CollectiveTimeoutFromTheEnvironment) {
    {
        ScopedEnv e("FOT_COLLECTIVE_TIMEOUT", nullptr);
        EXPECT_EQ(collective_timeout_from_env(), 600.0);
    }
    {
        ScopedEnv e("FOT_COLLECTIVE_TIMEOUT", "2.5");
        EXPECT_EQ(collective_timeout_from_env(), 2.5);
    }
    {
        ScopedEnv e("FOT_COLLECTIVE_TIMEOUT", "0");
        EXPECT_EQ(collective_timeout_from_env(), 0.0);
    }
    for (const char* bad : {"abc", "-3", "10s", "nan"}) {
        ScopedEnv e("FOT_COLLECTIVE_TIMEOUT", bad);
        EXPECT_NE(error_of([] {
                      collective_timeout_from_env();
                  }).find(std::string("FOT_COLLECTIVE_TIMEOUT=") + bad),
                  std::string::npos);
    }
}

}  // namespace
}  // namespace fot::parallel
