#include "runtime/core/cpu_threads.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace fot {
namespace {

TEST(CpuThreads, UnboundRanksShareTheNodesCores) {
    EXPECT_EQ(default_thread_count(16, 16, 1), 16);
    EXPECT_EQ(default_thread_count(16, 16, 4), 4);
    EXPECT_EQ(default_thread_count(16, 16, 3), 5);
    EXPECT_EQ(default_thread_count(2, 2, 4), 1);  // more ranks than cores: one thread each
}

TEST(CpuThreads, ABindingIsTheShare) {
    // mpirun --bind-to core / taskset: the rank may run on 2 of 64 cores.
    EXPECT_EQ(default_thread_count(2, 64, 8), 2);
    EXPECT_EQ(default_thread_count(1, 64, 1), 1);
}

TEST(CpuThreads, NonsenseCountsStillGiveAtLeastOneThread) {
    EXPECT_EQ(default_thread_count(0, 0, 0), 1);
    EXPECT_EQ(default_thread_count(4, 0, -3), 4);
}

TEST(CpuThreads, TheDefaultNeverExceedsTheCoresThisProcessMayUse) {
    const int allowed = allowed_cpu_count(), hardware = hardware_cpu_count();
    ASSERT_GE(allowed, 1);
    EXPECT_LE(allowed, hardware);
    for (int ranks = 1; ranks <= 2 * hardware + 1; ++ranks) {
        const int n = default_thread_count(allowed, hardware, ranks);
        EXPECT_GE(n, 1);
        EXPECT_LE(n, allowed) << ranks << " ranks";
        // Unbound: the node's ranks together stay within the cores.
        if (allowed == hardware) EXPECT_LE(n * ranks, std::max(allowed, ranks)) << ranks;
    }
}

}  // namespace
}  // namespace fot
