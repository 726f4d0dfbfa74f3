// Dispatch: hands work items to the dp groups of a world (the control plane of
// docs/architecture.md §6.5).
//
// Global rank 0 is the coordinator and also the leader of group 0. Group leaders pull work:
// a leader sends rank 0 a request that carries the result of its previous item, rank 0 answers
// with the next item (or "stop"), and the leader broadcasts the answer to its group; every
// rank of the group then runs the item (a collective over the group's tp/mp communicators).
// Rank 0 serves requests between its own items and, through `poll`, between the windows of
// its own item, so a long document on one group never holds the others back.
//
// Serving between windows needs a non-blocking "is a message waiting" test on the control
// communicator (Communicator::probe). Until the communicator has one, rank 0 serves every
// other leader after each of its own items (blocking); the items go out longest first when
// dp > 1 (see BatchJob), which keeps those rounds even.
//
// Messages go over communicators split from the world communicator (leaders; each group)
// with the watchdog off: a leader can legitimately wait for a whole document.
// Collective over the world communicator: every rank calls run_dispatch().
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
    // the one that counts. `poll` must be called now and then (between windows); it serves
    // other groups on rank 0 and does nothing elsewhere.
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

// Whether rank 0 can serve other groups between the windows of its own item (see above).
bool dispatch_can_poll();

// Collective over `world_comm`; `world` must describe it. Returns this rank's statistics.
DispatchStats run_dispatch(const parallel::World& world, parallel::Communicator& world_comm,
                           const DispatchHooks& hooks);

}  // namespace fot
