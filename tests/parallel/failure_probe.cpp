// A small multi-rank program that fails on purpose, to check the failure policy end to end
// (run by tests/parallel/expect_failure.cmake under mpirun):
//   failure_probe throw    rank 1 throws a fot::Error mid-step while the other ranks wait in
//                          an all_reduce; main catches it and aborts the world.
//   failure_probe timeout  rank 1 never reaches a barrier (it sleeps); the others' watchdog
//                          (FOT_COLLECTIVE_TIMEOUT) aborts the world naming the barrier.
//   failure_probe nccl_watchdog  rank 1's NCCL watchdog (parallel/nccl_watchdog.h, fake
//                          sources: no GPU) sees an all_reduce that never completes and ends
//                          the job through abort_world; rank 0 waits in an unwatched barrier.
// Either way every rank must be gone within seconds and mpirun must exit non-zero.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "parallel/mpi_session.h"
#include "parallel/nccl_watchdog.h"
#include "runtime/core/status.h"

using namespace fot::parallel;

namespace {

int run(const std::string& mode) {
    auto comm = make_world_communicator();
    FOT_CHECK(comm->size() >= 2, "failure_probe needs at least 2 ranks (run it under mpirun)");
    std::vector<float> step(1024, 1.f);
    comm->all_reduce_sum(host_view(step.data(), 1024));  // one healthy step first
    if (mode == "throw") {
        if (comm->rank() == 1) {
            FOT_THROW("failure_probe: rank 1 hit a bad input on purpose (layer 3, window 7)");
        }
        comm->all_reduce_sum(host_view(step.data(), 1024));
    } else if (mode == "timeout") {
        if (comm->rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(120));
        comm->barrier();
    } else if (mode == "nccl_watchdog") {
        if (comm->rank() == 1) {
            WorkWatchdog dog({[] { return std::string(); }, [] {}},
                             [](const std::string& msg) { abort_world(msg); });
            dog.watch({describe_nccl_work("all_reduce", "sum", 1024, "f32", 4096, "tp", 1, 2),
                       [] { return false; }},
                      comm->timeout());
            std::this_thread::sleep_for(std::chrono::seconds(120));
        }
        comm->set_timeout(0);  // only the watchdog may end this job
        comm->barrier();
    } else {
        FOT_THROW("failure_probe: unknown mode '", mode, "' (throw | timeout | nccl_watchdog)");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        MpiSession session(&argc, &argv);
        FOT_CHECK(argc == 2, "usage: failure_probe throw|timeout");
        return run(argv[1]);
    } catch (const fot::Error& e) {
        abort_world(e.what());
    }
}
