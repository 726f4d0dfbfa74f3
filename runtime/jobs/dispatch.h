// Dispatch: hands work items to the dp groups of a world (the control plane of
// docs/architecture.md §6.5).
//
// Global rank 0 is the coordinator and also the leader of group 0. Group leaders pull work:
// a leader sends rank 0 a request that carries the result of its previous item, rank 0 answers
// with the next item, and the leader broadcasts the answer to its group; every rank of the
// group then runs the item (a collective over the group's tp/mp communicators). Rank 0 serves
// requests between its own items and, through `poll`, between the windows of its own item, so
// a long document on one group never holds the others back.
//
// Frozen ranks: every wait in dispatch is under the collective watchdog (FOT_COLLECTIVE_TIMEOUT,
// T), so a stuck, dead or frozen (SIGSTOP) rank ends the job on every rank within about T.
// Waits that legitimately last a whole document are kept alive by heartbeats, one every T / 4
// at most, sent between windows:
//  - a leader running an item sends rank 0 "H" (from `poll`); rank 0 ends the job when a
//    leader it gave an item to has sent nothing for T;
//  - once the items run out, a leader that asks for more is not stopped at once (its group
//    would wait for the slowest group in the job's next collective): rank 0 sends it "H" until
//    every group is done, then "S" to all; the leader forwards each message to its group, and
//    rank 0 does the same for group 0.
// So `run` must call `poll` at least once per window, and one window must take less than
// about 3/4 T.
//
// Messages go over communicators split from the world communicator (leaders; each group),
// which inherit its watchdog timeout.
// Collective over the world communicator: every rank calls run_dispatch().
//
// Test hook: FOT_DISPATCH_FREEZE="RANK:N" makes world rank RANK stop itself (SIGSTOP) before
// it runs its (N+1)-th item, as a frozen node would.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "parallel/communicator.h"
#include "parallel/world.h"

namespace fot {

struct WorkItem {
    int64_t index = 0;
    std::string payload;
};

struct WorkResult {
    int64_t index = 0;
    bool ok = true;
    int64_t tokens = 0;  // tokens processed (throughput)
    std::string record;  // one JSON line (meaningful on group leaders)
};

struct DispatchHooks {
    // Rank 0: the next item to hand out, or nullopt when none is left.
    std::function<std::optional<WorkItem>()> next;
    // Every rank of the group that got the item runs it (collectively); the leader's result is
    // the one that counts. `poll` must be called between windows (at least once per window):
    // it serves other groups on rank 0 and sends heartbeats from the other leaders.
    std::function<WorkResult(const WorkItem&, const std::function<void()>& poll)> run;
    // Rank 0: a finished item, in completion order, with the group that ran it.
    std::function<void(WorkResult result, int group)> done;
};

struct DispatchStats {
    int64_t items = 0;           // items this rank ran
    int64_t tokens = 0;          // tokens this rank processed
    double busy_seconds = 0.0;   // time inside `run`
    double total_seconds = 0.0;  // time inside run_dispatch
};

// Collective over `world_comm`; `world` must describe it. Returns this rank's statistics.
DispatchStats run_dispatch(const parallel::World& world, parallel::Communicator& world_comm,
                           const DispatchHooks& hooks);

}  // namespace fot
