// The emulated racecheck (kernels/cuda/emu/racecheck.h): where the emulated kernels carry
// -fsanitize=thread's instrumentation and the emulator takes its hooks
// (FOT_CUDA_EMULATOR_RACECHECK), two threads of a block that touch one shared byte between
// barriers, one of them writing, abort the test with a report, whatever order the scheduler
// picked, as compute-sanitizer's racecheck reports such a hazard on a GPU. Each test runs a
// kernel clean first, then the same kernel with its barrier missing and expects the report:
// minimal kernels on dynamic and static shared memory, a warp exchange without __syncwarp, a
// cp.async read before its wait, and every __syncthreads of the tensor-core attention kernel
// deleted in turn.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "cuda_runtime.h"  // the emulator's: emu::Launch, emu::dynamic_smem, emu::skip_barrier
#include "kernels/cuda/mma.cuh"
#include "runtime/backend/cuda_backend.h"
#include "tests/kernels/backend_conformance.h"

namespace {

class EmulatedRacecheck : public ::testing::Test {
  protected:
    void SetUp() override {
        // Each death check runs in a fresh process (earlier launches may have started threads).
        GTEST_FLAG_SET(death_test_style, "threadsafe");
        emu::skip_barrier(nullptr, 0);
    }
};

constexpr const char* kHazard = "racecheck: [a-z-]+ hazard on byte [0-9]+ of";

float* device_floats(int64_t n) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, static_cast<size_t>(n) * sizeof(float)), cudaSuccess);
    return static_cast<float*>(p);
}

std::vector<float> fetch(const float* d, int64_t n) {
    std::vector<float> h(static_cast<size_t>(n));
    EXPECT_EQ(cudaMemcpy(h.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return h;
}

// Each thread publishes its index and reads the one 32 threads on (another warp).
__global__ void rotate_dynamic(float* out, int barrier) {
    float* s = emu::dynamic_smem<float>();
    s[threadIdx.x] = static_cast<float>(threadIdx.x);
    if (barrier) __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 32) % blockDim.x];
}

TEST_F(EmulatedRacecheck, AMissingBarrierOnDynamicSharedMemoryIsReported) {
    float* out = device_floats(64);
    emu::Launch(2, 64, 64 * sizeof(float))(rotate_dynamic, out, 1);
    const std::vector<float> got = fetch(out, 64);
    for (int i = 0; i < 64; ++i) ASSERT_EQ(got[i], static_cast<float>((i + 32) % 64));
    EXPECT_DEATH(emu::Launch(2, 64, 64 * sizeof(float))(rotate_dynamic, out, 0), kHazard);
    cudaFree(out);
}

// The same through a static __shared__ array (what preprocess.py makes of `__shared__`).
__global__ void rotate_static(float* out, int barrier) {
    static float tile[64];
    emu::poison_static(tile, sizeof(tile));
    tile[threadIdx.x] = static_cast<float>(threadIdx.x);
    if (barrier) __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x + 32) % 64];
}

TEST_F(EmulatedRacecheck, AMissingBarrierOnAStaticSharedArrayIsReported) {
    float* out = device_floats(64);
    emu::Launch(1, 64)(rotate_static, out, 1);
    EXPECT_EQ(fetch(out, 64)[0], 32.f);
    EXPECT_DEATH(emu::Launch(1, 64)(rotate_static, out, 0), "racecheck: .* of a static __shared__");
}

// Overwriting what another thread still reads (a write-after-read): each thread reads its
// neighbour's slot, then writes its own.
__global__ void read_then_overwrite(float* out, int barrier) {
    float* s = emu::dynamic_smem<float>();
    s[threadIdx.x] = 1.f;
    __syncthreads();
    const float v = s[(threadIdx.x + 1) % blockDim.x];
    if (barrier) __syncthreads();
    s[threadIdx.x] = v + 1.f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}

TEST_F(EmulatedRacecheck, OverwritingWhatAnotherThreadStillReadsIsReported) {
    float* out = device_floats(96);
    emu::Launch(1, 96, 96 * sizeof(float))(read_then_overwrite, out, 1);
    EXPECT_EQ(fetch(out, 96)[5], 2.f);
    EXPECT_DEATH(emu::Launch(1, 96, 96 * sizeof(float))(read_then_overwrite, out, 0),
                 "racecheck: (write-after-read|read-after-write) hazard");
}

// Lanes of one warp exchanging through shared memory need __syncwarp (independent thread
// scheduling); lanes of different warps are never ordered by it.
__global__ void warp_exchange(float* out, int sync) {
    float* s = emu::dynamic_smem<float>();
    s[threadIdx.x] = static_cast<float>(threadIdx.x);
    if (sync) __syncwarp();
    out[threadIdx.x] = s[threadIdx.x ^ 1u];
}

TEST_F(EmulatedRacecheck, AWarpExchangeWithoutSyncwarpIsReported) {
    float* out = device_floats(64);
    emu::Launch(1, 64, 64 * sizeof(float))(warp_exchange, out, 1);
    EXPECT_EQ(fetch(out, 64)[6], 7.f);
    EXPECT_DEATH(emu::Launch(1, 64, 64 * sizeof(float))(warp_exchange, out, 0), kHazard);
}

// Thread 0 copies 16 bytes with cp.async; the others read them after a barrier. The copy
// must be waited for before that barrier: waited after it, it may land while they read.
__global__ void copy_then_share(float* out, const float* in, int wait_first) {
    namespace mma = fot::kernels::cuda::mma;
    float* s = emu::dynamic_smem<float>();
    if (threadIdx.x == 0) {
        mma::cp_async<16>(s, in, true);
        mma::cp_async_commit();
        if (wait_first) mma::cp_async_wait<0>();
    }
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x % 4];
    if (threadIdx.x == 0 && !wait_first) mma::cp_async_wait<0>();
}

TEST_F(EmulatedRacecheck, ReadingACpAsyncDestinationBeforeItsWaitIsReported) {
    float* in = device_floats(4);
    const float host[4] = {1.f, 2.f, 3.f, 4.f};
    ASSERT_EQ(cudaMemcpy(in, host, sizeof(host), cudaMemcpyHostToDevice), cudaSuccess);
    float* out = device_floats(64);
    emu::Launch(1, 64, 16)(copy_then_share, out, static_cast<const float*>(in), 1);
    EXPECT_EQ(fetch(out, 64)[42], 3.f);
    EXPECT_DEATH(emu::Launch(1, 64, 16)(copy_then_share, out, static_cast<const float*>(in), 0),
                 kHazard);
    cudaFree(in);
    cudaFree(out);
}

// The source lines of the tensor-core attention kernel's __syncthreads.
std::vector<int> barrier_lines(const std::string& rel) {
    std::ifstream src(std::string(FOT_SOURCE_DIR) + "/" + rel);
    EXPECT_TRUE(src.good()) << rel;
    std::vector<int> lines;
    std::string text;
    for (int n = 1; std::getline(src, text); ++n) {
        const size_t at = text.find("__syncthreads();");
        const size_t comment = text.find("//");
        if (at != std::string::npos && (comment == std::string::npos || comment > at))
            lines.push_back(n);
    }
    return lines;
}

// What EmulatedFaults.EveryBarrierOfTheTensorCoreKernelIsNeeded shows with wrong results
// under a few seeds, the racecheck shows in one run: each deleted barrier is a hazard.
TEST_F(EmulatedRacecheck, EveryBarrierOfTheTensorCoreAttentionKernelIsReportedMissing) {
    const std::string rel = "kernels/cuda/attention_tc_kernel.cuh";
    const std::vector<int> lines = barrier_lines(rel);
    ASSERT_GE(lines.size(), 3u) << "expected the kernel's barriers in " << rel;
    fot::CudaBackend gpu(0);
    // One 64-query block (one m-tile per warp) and one of 120 queries (two m-tiles), over local
    // and memory key tiles (as the EmulatedFaults test runs them).
    using fot::testing::AttnCase;
    const std::vector<AttnCase> cases = {
        {fot::Precision::kFast, 100, 64, 40, 330, fot::DType::kBF16, fot::DType::kBF16, 1},
        {fot::Precision::kFast, 100, 120, 40, 330, fot::DType::kBF16, fot::DType::kBF16, 1}};
    for (const AttnCase& c : cases) ASSERT_TRUE(fot::testing::attention_matches_naive(gpu, c)) << c;
    for (int line : lines) {
        SCOPED_TRACE(rel + ":" + std::to_string(line));
        EXPECT_DEATH(
            {
                emu::skip_barrier(rel.c_str(), line);
                for (const AttnCase& c : cases) (void)fot::testing::attention_matches_naive(gpu, c);
            },
            kHazard);
    }
}

}  // namespace
