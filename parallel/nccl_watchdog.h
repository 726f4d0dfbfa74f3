// The NCCL watchdog: waiting for enqueued device work without ever hanging
// (docs/architecture.md §6.5).
//
// NCCL collectives are enqueued on a stream and complete later; a peer that died, diverged or
// lost its link leaves the kernel spinning and the host blocked in the next stream
// synchronise forever. Every wait for NCCL work therefore goes through wait_for_work(): it
// polls the work's completion and the communicator's asynchronous error
// (ncclCommGetAsyncError) until the work is done, the error is set, or the collective timeout
// (FOT_COLLECTIVE_TIMEOUT, as on the MPI path) passes. On error or timeout it calls abort()
// (ncclCommAbort on every NCCL communicator of the rank) and returns ONE line naming the
// collective, its group, its size and the error or the elapsed time; the caller hands that
// line to the failure policy (abort_world), which ends the job on every rank.
//
// WorkWatchdog runs the same loop on a background thread for work the host does not wait for
// itself (collectives on the backend's stream: the host later blocks in the backend's stream
// synchronise, which the watchdog unblocks by aborting the communicators and the world).
//
// No NCCL or CUDA include: the sources are callables, so tests drive the loop with fakes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace fot::parallel {

// One enqueued operation: what it is, for the message, e.g.
// "all_reduce(sum, 4096 x f32 = 16384 bytes) on the nccl tp group (rank 1 of 2)", and how to ask
// whether it has completed (cudaEventQuery on an event recorded after it). query_done may
// throw fot::Error (a CUDA error): that is reported like an asynchronous error.
struct WatchedWork {
    std::string what;
    std::function<bool()> query_done;
};

// Per communicator: its asynchronous error ("" when none, else the error's text) and how to
// abort (every NCCL communicator of the rank).
struct WatchSources {
    std::function<std::string()> query_async_error;
    std::function<void()> abort;
};

// "all_reduce(sum, 4096 x f32 = 16384 bytes) on the nccl tp group (rank 1 of 2)".
// `detail` ("sum", "root 0", "to rank 1"; may be empty) comes first inside the parentheses.
std::string describe_nccl_work(const std::string& op, const std::string& detail, int64_t count,
                               const char* dtype, int64_t bytes, const std::string& group, int rank,
                               int size);

// Polls until `work` is done (returns ""), or until an asynchronous error or `timeout_s`
// (0 = no timeout) elapses: then calls sources.abort() once and returns the one-line message.
// Returns "" early when *cancel becomes true (shutdown). Polls every poll_s seconds (after a
// short spin when poll_s is below 0.1 ms: a host that waits wants the result soon).
std::string wait_for_work(const WatchedWork& work, const WatchSources& sources, double timeout_s,
                          const std::atomic<bool>* cancel = nullptr, double poll_s = 50e-6);

// A background thread that waits for watched work in FIFO order (work on one stream completes
// in order), polling every millisecond so that it takes next to no CPU from the rank. The first
// failure is passed to on_failure (the failure policy: abort_world, which does not return) and the
// thread stops watching.
class WorkWatchdog {
  public:
    using FailureHandler = std::function<void(const std::string&)>;
    WorkWatchdog(WatchSources sources, FailureHandler on_failure);
    // Stops the thread; work still pending is no longer watched.
    ~WorkWatchdog();
    WorkWatchdog(const WorkWatchdog&) = delete;
    WorkWatchdog& operator=(const WorkWatchdog&) = delete;

    // Watches `work` with this timeout (seconds from when it reaches the front of the queue,
    // i.e. when everything enqueued before it has completed).
    void watch(WatchedWork work, double timeout_s);
    // Work queued or being waited for now.
    int64_t pending() const;

  private:
    void run();

    WatchSources sources_;
    FailureHandler on_failure_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<WatchedWork, double>> queue_;
    int64_t in_flight_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace fot::parallel
