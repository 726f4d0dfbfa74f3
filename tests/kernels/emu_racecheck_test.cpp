// The emulated racecheck (kernels/cuda/emu/racecheck.h): where the emulated kernels carry
// -fsanitize=thread's instrumentation and the emulator takes its hooks
// (FOT_CUDA_EMULATOR_RACECHECK), two threads of a block that touch one shared byte between
// barriers, one of them writing, abort the test with a report, whatever order the scheduler
// picked, as compute-sanitizer's racecheck reports such a hazard on a GPU. Each test runs a
// kernel clean first, then the same kernel with its barrier missing and expects the report:
// minimal kernels on dynamic and static shared memory, a warp exchange without __syncwarp, a
// cp.async read before its wait, and every __syncthreads of the tensor-core attention kernel
// deleted in turn. In device memory, between the blocks of a launch: two blocks writing one
// byte, a block reading what another writes, and the last-block pattern without its fences.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "cuda_runtime.h"  // the emulator's: emu::Launch, emu::dynamic_smem, emu::skip_barrier
#include "kernels/cuda/mma.cuh"
#include "runtime/backend/cuda_backend.h"
#include "tests/kernels/backend_conformance.h"
#include "tests/kernels/backend_test_util.h"

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
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[(threadIdx.x + 32) % blockDim.x];
}

TEST_F(EmulatedRacecheck, AMissingBarrierOnDynamicSharedMemoryIsReported) {
    float* out = device_floats(128);
    emu::Launch(2, 64, 64 * sizeof(float))(rotate_dynamic, out, 1);
    const std::vector<float> got = fetch(out, 128);
    for (int i = 0; i < 128; ++i) ASSERT_EQ(got[i], static_cast<float>((i + 32) % 64));
    EXPECT_DEATH(emu::Launch(2, 64, 64 * sizeof(float))(rotate_dynamic, out, 0), kHazard);
    cudaFree(out);
}

// Device memory between the blocks of one launch, whose order a GPU does not fix: each block
// writes its slice of out (`overlap` 0), or all blocks write the same one (1).
__global__ void write_slices(float* out, int overlap) {
    out[(overlap ? 0 : blockIdx.x * blockDim.x) + threadIdx.x] = static_cast<float>(blockIdx.x);
}

// Each block doubles its slice in place and reads its neighbour's: unordered reads of what the
// other block writes.
__global__ void read_neighbour(float* out, const float* in, int neighbour) {
    const unsigned from = neighbour ? (blockIdx.x + 1) % gridDim.x : blockIdx.x;
    const float v = in[from * blockDim.x + threadIdx.x];
    out[blockIdx.x * blockDim.x + threadIdx.x] = 2.f * v;
}

TEST_F(EmulatedRacecheck, BlocksTouchingOneDeviceByteInALaunchAreReported) {
    float* out = device_floats(3 * 32);
    emu::Launch(3, 32)(write_slices, out, 0);
    EXPECT_EQ(fetch(out, 96)[70], 2.f);
    EXPECT_DEATH(emu::Launch(3, 32)(write_slices, out, 1),
                 "racecheck: write-after-write hazard on byte [0-9]+ of device memory \\(an "
                 "allocation of 384 bytes\\) in block \\([0-2],0,0\\).*block \\([0-2],0,0\\) wrote "
                 "it in the same launch");
    // In place (out == in): each block reading its own slice is fine, its neighbour's is not.
    emu::Launch(3, 32)(read_neighbour, out, static_cast<const float*>(out), 0);
    EXPECT_EQ(fetch(out, 96)[70], 4.f);
    EXPECT_DEATH(emu::Launch(3, 32)(read_neighbour, out, static_cast<const float*>(out), 1),
                 "racecheck: (read-after-write|write-after-read) hazard on byte [0-9]+ of device "
                 "memory");
    cudaFree(out);
}

// threadFenceReduction's last block: every block publishes a partial sum (write, fence, ticket)
// and the block that takes the last ticket reads them all after a fence of its own. Without
// the fences (`fences` 0) the reads are unordered with the other blocks' writes.
__global__ void last_block_sum(float* partial, unsigned* ticket, float* total, int fences) {
    __shared__ int last;
    if (threadIdx.x == 0) partial[blockIdx.x] = static_cast<float>(blockIdx.x + 1);
    if (fences) __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    if (fences) __threadfence();
    if (threadIdx.x == 0) {
        float sum = 0.f;
        for (unsigned b = 0; b < gridDim.x; ++b) sum += partial[b];
        *total = sum;
        *ticket = 0;
    }
}

TEST_F(EmulatedRacecheck, TheLastBlockPatternOrdersBlocksOnlyWithItsFences) {
    float* partial = device_floats(4);
    float* total = device_floats(1);
    void* t = nullptr;
    ASSERT_EQ(cudaMalloc(&t, sizeof(unsigned)), cudaSuccess);
    auto* ticket = static_cast<unsigned*>(t);
    ASSERT_EQ(cudaMemsetAsync(ticket, 0, sizeof(unsigned), nullptr), cudaSuccess);
    emu::Launch(4, 64)(last_block_sum, partial, ticket, total, 1);
    EXPECT_EQ(fetch(total, 1)[0], 10.f);
    EXPECT_DEATH(emu::Launch(4, 64)(last_block_sum, partial, ticket, total, 0),
                 "racecheck: read-after-write hazard on byte [0-9]+ of device memory");
    cudaFree(partial);
    cudaFree(total);
    cudaFree(ticket);
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

// The source lines of `call` in `rel` (outside comments).
std::vector<int> call_lines(const std::string& rel, const std::string& call) {
    std::ifstream src(std::string(FOT_SOURCE_DIR) + "/" + rel);
    EXPECT_TRUE(src.good()) << rel;
    std::vector<int> lines;
    std::string text;
    for (int n = 1; std::getline(src, text); ++n) {
        const size_t at = text.find(call);
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
    const std::vector<int> lines = call_lines(rel, "__syncthreads();");
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

// The kernels' last-block patterns (decode attention's split merge, the decode GEMV's add +
// RMSNorm epilogue): each __threadfence deleted in turn (the writers' before their ticket, the
// last block's after it) leaves the last block's reads unordered with the other blocks' writes.
TEST_F(EmulatedRacecheck, EveryFenceOfTheLastBlockPatternsIsReportedMissing) {
    fot::CudaBackend gpu(0);
    using fot::testing::AttnCase;
    // One query over 3,000 memory keys: several key splits, merged by the last block.
    const AttnCase decode{fot::Precision::kExact, 100, 1, 37, 3000, fot::DType::kF32,
                          fot::DType::kBF16};
    ASSERT_TRUE(fot::testing::attention_matches_naive(gpu, decode)) << decode;
    // o_proj of one token, 300 rows (19 blocks), with the residual add and RMSNorm epilogue.
    const int64_t C = 300, K = 96;
    using fot::testing::make_buffer;
    using fot::testing::random_floats;
    fot::Buffer a = make_buffer(gpu, fot::DType::kBF16, {1, K}, random_floats(K, 190));
    fot::Buffer w = make_buffer(gpu, fot::DType::kBF16, {C, K}, random_floats(C * K, 191));
    fot::Buffer nw = make_buffer(gpu, fot::DType::kF32, {C}, random_floats(C, 192, 0.5f, 1.5f));
    fot::Buffer x = make_buffer(gpu, fot::DType::kF32, {1, C}, random_floats(C, 193));
    fot::Buffer proj = gpu.alloc(fot::DType::kF32, {1, C});
    fot::Buffer xn = gpu.alloc(fot::DType::kBF16, {1, C});
    const auto gemv = [&] {
        gpu.matmul_add_rmsnorm(xn.view(), x.view(), proj.view(), a.view(), w.view(), nw.view(),
                               1e-6f);
        gpu.synchronize();
    };
    gemv();
    for (const char* rel : {"kernels/cuda/attention_decode.cu", "kernels/cuda/gemv.cu"}) {
        const std::vector<int> lines = call_lines(rel, "__threadfence();");
        ASSERT_EQ(lines.size(), 2u) << "expected a release and an acquire fence in " << rel;
        for (int line : lines) {
            SCOPED_TRACE(std::string(rel) + ":" + std::to_string(line));
            EXPECT_DEATH(
                {
                    emu::skip_barrier(rel, line);
                    if (std::string(rel).find("gemv") != std::string::npos) {
                        gemv();
                    } else {
                        (void)fot::testing::attention_matches_naive(gpu, decode);
                    }
                },
                "racecheck: read-after-write hazard on byte [0-9]+ of device memory");
        }
    }
}

}  // namespace
