// The NCCL watchdog loop with fake sources (no GPU, no NCCL): work that completes returns
// quietly; a timeout or an asynchronous error aborts the communicators within the timeout and
// yields one line naming the collective, its group, its size and the cause.
#include "parallel/nccl_watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "runtime/core/status.h"

namespace fot::parallel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Fakes {
    std::atomic<int> polls{0};
    std::atomic<int> aborts{0};
    std::atomic<int> done_after{-1};   // polls until done; -1 = never
    std::atomic<int> error_after{-1};  // polls until the async error; -1 = never

    WatchedWork work(const std::string& what) {
        return {what, [this] {
                    int n = ++polls;
                    return done_after >= 0 && n > done_after;
                }};
    }
    WatchSources sources() {
        return {[this]() -> std::string {
                    if (error_after >= 0 && polls > error_after)
                        return "NCCL async error: remote process exited or there was a network "
                               "error";
                    return "";
                },
                [this] { ++aborts; }};
    }
};

const std::string kWhat = describe_nccl_work("all_reduce", "sum", 4096, "f32", 16384, "tp", 1, 2);

TEST(NcclWatchdog, DescribesTheCollectiveItsGroupAndSize) {
    EXPECT_EQ(kWhat,
              "all_reduce(sum, 4096 x f32 = 16384 bytes) on the nccl tp group (rank 1 of 2)");
    EXPECT_EQ(describe_nccl_work("all_gather", "", 10, "f32", 40, "mp", 0, 4),
              "all_gather(10 x f32 = 40 bytes) on the nccl mp group (rank 0 of 4)");
}

TEST(NcclWatchdog, CompletedWorkReturnsQuietlyWithoutAbort) {
    Fakes f;
    f.done_after = 1000;
    EXPECT_EQ(wait_for_work(f.work(kWhat), f.sources(), 5.0), "");
    EXPECT_EQ(f.polls, 1001);
    EXPECT_EQ(f.aborts, 0);
}

TEST(NcclWatchdog, TimeoutAbortsWithinTheTimeoutAndNamesTheCollective) {
    Fakes f;  // never completes, never errors
    const auto t0 = Clock::now();
    const std::string msg = wait_for_work(f.work(kWhat), f.sources(), 0.2);
    const double took = seconds_since(t0);
    EXPECT_GE(took, 0.2);
    EXPECT_LT(took, 2.0);
    EXPECT_EQ(f.aborts, 1);
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind(kWhat + " did not complete within 0.2 s (FOT_COLLECTIVE_TIMEOUT)", 0), 0u)
        << msg;
    EXPECT_NE(msg.find("aborted the NCCL communicators"), std::string::npos) << msg;
}

TEST(NcclWatchdog, AsyncErrorAbortsAtOnceAndNamesTheError) {
    Fakes f;
    f.error_after = 3;
    const auto t0 = Clock::now();
    const std::string msg = wait_for_work(f.work(kWhat), f.sources(), 600.0);
    EXPECT_LT(seconds_since(t0), 2.0);
    EXPECT_EQ(f.aborts, 1);
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind(kWhat + " failed after ", 0), 0u) << msg;
    EXPECT_NE(msg.find("NCCL async error: remote process exited"), std::string::npos) << msg;
}

TEST(NcclWatchdog, ACudaErrorWhileQueryingIsReportedLikeAnAsyncError) {
    Fakes f;
    WatchedWork w{kWhat, []() -> bool { FOT_THROW("CUDA call cudaEventQuery failed: boom"); }};
    const std::string msg = wait_for_work(w, f.sources(), 600.0);
    EXPECT_EQ(f.aborts, 1);
    EXPECT_NE(msg.find("failed after"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cudaEventQuery failed: boom"), std::string::npos) << msg;
}

TEST(NcclWatchdog, ZeroTimeoutWaitsUntilDone) {
    Fakes f;
    const auto t0 = Clock::now();
    WatchedWork slow{kWhat, [&] { return seconds_since(t0) > 0.3; }};
    EXPECT_EQ(wait_for_work(slow, f.sources(), 0.0), "");
    EXPECT_GE(seconds_since(t0), 0.3);
    EXPECT_EQ(f.aborts, 0);
}

TEST(NcclWatchdog, BackgroundThreadReportsAStuckCollectiveWithinTheTimeout) {
    Fakes done, stuck;
    done.done_after = 5;
    std::atomic<int> failures{0};
    std::string msg;
    std::atomic<bool> reported{false};
    WorkWatchdog dog(stuck.sources(), [&](const std::string& m) {
        msg = m;
        ++failures;
        reported = true;
    });
    const auto t0 = Clock::now();
    dog.watch(done.work("first"), 0.2);  // completes: no report
    dog.watch(stuck.work(kWhat), 0.2);   // never completes
    dog.watch(done.work("after"), 0.2);  // never reached
    while (!reported && seconds_since(t0) < 5)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(reported);
    EXPECT_LT(seconds_since(t0), 2.0);
    EXPECT_EQ(failures, 1);
    EXPECT_EQ(stuck.aborts, 1);
    EXPECT_EQ(msg.rfind(kWhat + " did not complete within 0.2 s", 0), 0u) << msg;
}

TEST(NcclWatchdog, BackgroundThreadStaysQuietForCompletedWorkAndStopsPromptly) {
    Fakes f;
    f.done_after = 0;
    std::atomic<int> failures{0};
    auto dog = std::make_unique<WorkWatchdog>(f.sources(), [&](const std::string&) { ++failures; });
    for (int i = 0; i < 100; ++i) dog->watch(f.work(kWhat), 0.2);
    const auto t0 = Clock::now();
    while (dog->pending() > 0 && seconds_since(t0) < 5)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(dog->pending(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // past every timeout
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(f.aborts, 0);
    // Work that never completes does not keep the destructor waiting.
    Fakes stuck;
    dog->watch(stuck.work(kWhat), 0);
    const auto t1 = Clock::now();
    dog.reset();
    EXPECT_LT(seconds_since(t1), 1.0);
}

}  // namespace
}  // namespace fot::parallel
