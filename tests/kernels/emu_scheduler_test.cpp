// The emulator's block scheduler (kernels/cuda/emu/emu.cpp): what the emulated kernel tests
// rely on, with minimal kernels. Threads that exit no longer count for __syncthreads (a block
// of 1024 whose threads from 40 on return at once still passes its barriers, also when an exit
// is what the last waiter waited for); the schedule is a function of the seed alone (the fault
// tests' verdicts must not change from run to run) and a different seed gives a different one; a
// warp collective that some lanes never reach is a deadlock, reported with where the threads wait,
// not a hang.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "cuda_runtime.h"  // the emulator's: emu::Launch, emu::dynamic_smem, emu::set_seed

namespace {

template <typename T>
T* device_zeros(int64_t n) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, static_cast<size_t>(n) * sizeof(T)), cudaSuccess);
    const std::vector<T> zeros(static_cast<size_t>(n), T{});
    EXPECT_EQ(cudaMemcpy(p, zeros.data(), zeros.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
    return static_cast<T*>(p);
}

template <typename T>
std::vector<T> to_host(const T* p, int64_t n) {
    std::vector<T> h(static_cast<size_t>(n));
    EXPECT_EQ(cudaMemcpy(h.data(), p, h.size() * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
}

// Threads from `live` on return at once; the others swap values through shared memory across
// two barriers.
__global__ void exchange_with_early_exits(int* out, int live) {
    int* s = emu::dynamic_smem<int>();
    const int t = static_cast<int>(threadIdx.x);
    if (t >= live) return;
    s[t] = t;
    __syncthreads();
    const int mirrored = s[live - 1 - t];
    __syncthreads();
    s[t] = mirrored * 2;
    __syncthreads();
    out[t] = s[live - 1 - t];
}

TEST(EmulatedScheduler, ThreadsThatExitNoLongerCountForSyncthreads) {
    // Most threads exit: the last thread to run before the barrier completes is one of them
    // (with this seed, and almost any other), so an exit is what releases the barrier.
    constexpr int kThreads = 1024, kLive = 40;
    int* out = device_zeros<int>(kThreads);
    emu::Launch(1, kThreads, kThreads * sizeof(int))(exchange_with_early_exits, out, kLive);
    const std::vector<int> got = to_host(out, kThreads);
    for (int t = 0; t < kLive; ++t) ASSERT_EQ(got[t], 2 * t) << "thread " << t;
    for (int t = kLive; t < kThreads; ++t) ASSERT_EQ(got[t], 0) << "thread " << t;
    cudaFree(out);
}

// Each thread takes a ticket when it first runs and again after a barrier: the tickets are the
// order the scheduler ran the threads in (one thread runs at a time).
__global__ void take_tickets(int* order, int* counter) {
    const unsigned t = threadIdx.x + blockDim.x * blockIdx.x;
    order[2 * t] = (*counter)++;
    __syncthreads();
    order[2 * t + 1] = (*counter)++;
}

std::vector<int> schedule(uint64_t seed) {
    constexpr int kBlocks = 3, kThreads = 256;
    int* order = device_zeros<int>(2 * kBlocks * kThreads);
    int* counter = device_zeros<int>(1);
    emu::set_seed(seed);
    emu::Launch(kBlocks, kThreads)(take_tickets, order, counter);
    std::vector<int> got = to_host(order, 2 * kBlocks * kThreads);
    cudaFree(order);
    cudaFree(counter);
    emu::set_seed(1);
    return got;
}

TEST(EmulatedScheduler, TheSeedFixesTheScheduleAndAnotherSeedChangesIt) {
    const std::vector<int> a = schedule(7), b = schedule(7), c = schedule(8);
    std::vector<int> sorted = a;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int> every(a.size());
    std::iota(every.begin(), every.end(), 0);
    ASSERT_EQ(sorted, every) << "each thread ran each part exactly once";
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    // Not the threads in order: the first tickets of a block's threads are not increasing.
    std::vector<int> first(256);
    for (size_t t = 0; t < first.size(); ++t) first[t] = a[2 * t];
    EXPECT_FALSE(std::is_sorted(first.begin(), first.end()));
}

// Lanes 0-15 wait in a full-warp shuffle that lanes 16-31 never reach: they wait in
// __syncthreads instead.
__global__ void divergent_collective(float* out) {
    float v = static_cast<float>(threadIdx.x);
    if (threadIdx.x < 16) {
        v = __shfl_sync(0xffffffffu, v, 0);
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = v;
}

TEST(EmulatedScheduler, AWarpCollectiveSomeLanesNeverReachIsADeadlock) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    float* out = device_zeros<float>(32);
    EXPECT_DEATH(emu::Launch(1, 32)(divergent_collective, out),
                 "deadlock in block \\(0,0,0\\): 16 thread\\(s\\) wait in __syncthreads, 16 in "
                 "warp collectives, 0 exited");
    cudaFree(out);
}

}  // namespace
