// Dispatch over MPI (np 2 and 4): for each layout (tp 1 or 2, the rest dp groups) every item
// runs exactly once, on every rank of one group, and its result reaches rank 0; an item that
// takes long on one group does not stop the job, not even when it takes longer than the
// collective watchdog's timeout (heartbeats); the control plane leaves no message behind (a
// second dispatch on the same communicator works). A frozen rank is tests/jobs/frozen_rank.sh.
#include "runtime/jobs/dispatch.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "parallel/mpi_session.h"
#include "parallel/world.h"

namespace fot {
namespace {

// `long_seconds`: how long item 0 takes (polling every 5 ms, as between windows).
void check_layout(parallel::Communicator& comm, int tp, int items, double long_seconds = 0.05) {
    const int P = comm.size(), rank = comm.rank();
    const parallel::World world(P, rank, tp, 1);
    int next = 0;
    std::map<int64_t, std::string> results;  // rank 0
    std::map<int64_t, int> groups;           // rank 0
    std::vector<int64_t> ran;                // this rank
    DispatchHooks hooks;
    hooks.next = [&]() -> std::optional<WorkItem> {
        if (next >= items) return std::nullopt;
        const int i = next++;
        return WorkItem{i, "payload-" + std::to_string(i)};
    };
    hooks.run = [&](const WorkItem& item, const std::function<void()>& poll) {
        EXPECT_EQ(item.payload, "payload-" + std::to_string(item.index));
        ran.push_back(item.index);
        if (item.index == 0) {
            // A long document: the other groups keep pulling work meanwhile.
            const auto end =
                std::chrono::steady_clock::now() + std::chrono::duration<double>(long_seconds);
            while (std::chrono::steady_clock::now() < end) {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                poll();
            }
        }
        poll();
        WorkResult r;
        r.index = item.index;
        r.ok = item.index % 3 != 0;
        r.tokens = item.index + 1;
        r.record =
            "record-" + std::to_string(item.index) + "-group-" + std::to_string(world.group());
        return r;
    };
    hooks.done = [&](WorkResult r, int group) {
        EXPECT_TRUE(results.emplace(r.index, r.record).second) << "item " << r.index << " twice";
        EXPECT_EQ(r.ok, r.index % 3 != 0);
        EXPECT_EQ(r.tokens, r.index + 1);
        groups[r.index] = group;
    };
    const DispatchStats stats = run_dispatch(world, comm, hooks);
    EXPECT_EQ(stats.items, static_cast<int64_t>(ran.size()));
    EXPECT_GE(stats.total_seconds, stats.busy_seconds);

    // Every rank of a group ran the same items, in the same order.
    std::vector<int64_t> mine(static_cast<size_t>(items), -1);
    for (size_t k = 0; k < ran.size(); ++k)
        mine[static_cast<size_t>(ran[k])] = static_cast<int64_t>(k);
    std::vector<int64_t> all(static_cast<size_t>(items) * P);
    comm.all_gather(parallel::host_view(mine.data(), items),
                    parallel::host_view(all.data(), static_cast<int64_t>(all.size())));
    for (int r = 0; r < P; ++r) {
        const parallel::World w(P, r, tp, 1);
        const int leader = w.group_leader();
        for (int i = 0; i < items; ++i) {
            EXPECT_EQ(all[static_cast<size_t>(r * items + i)],
                      all[static_cast<size_t>(leader * items + i)])
                << "rank " << r << " and its leader " << leader << " disagree on item " << i;
        }
    }
    if (rank == 0) {
        ASSERT_EQ(static_cast<int>(results.size()), items);
        for (int i = 0; i < items; ++i) {
            EXPECT_EQ(results[i],
                      "record-" + std::to_string(i) + "-group-" + std::to_string(groups[i]));
            // The leader of the group that ran it saw it.
            const int leader = world.dp_leader_ranks()[static_cast<size_t>(groups[i])];
            EXPECT_GE(all[static_cast<size_t>(leader * items + i)], 0);
        }
        // With several groups, the work was shared.
        if (world.dp() > 1 && items > 2 * world.dp()) {
            std::map<int, int> per_group;
            for (const auto& [i, g] : groups) ++per_group[g];
            EXPECT_EQ(static_cast<int>(per_group.size()), world.dp());
        }
    }
}

TEST(Dispatch, EveryItemOnceOnEveryLayout) {
    auto comm = parallel::make_mpi_world_communicator();
    for (int tp : {1, 2}) {
        if (comm->size() % tp != 0) continue;
        SCOPED_TRACE(::testing::Message() << "tp " << tp);
        check_layout(*comm, tp, 23);
        check_layout(*comm, tp, 0);  // nothing to do
        check_layout(*comm, tp, 1);  // fewer items than groups
    }
}

// Item 0 runs 3 s under a 1 s watchdog: the groups that finish early wait (for more work,
// then in the all_gather after dispatch) while it runs; without heartbeats their watchdog
// would end the job, with them a wait is only ended by silence.
TEST(Dispatch, ItemLongerThanTheWatchdogTimeout) {
    auto comm = parallel::make_mpi_world_communicator();
    comm->set_timeout(1.0);
    for (int tp : {1, 2}) {
        if (comm->size() % tp != 0) continue;
        SCOPED_TRACE(::testing::Message() << "tp " << tp);
        check_layout(*comm, tp, 9, /*long_seconds=*/3.0);
    }
}

}  // namespace
}  // namespace fot
