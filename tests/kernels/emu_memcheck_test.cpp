// The emulated memcheck (kernels/cuda/emu/README.md): where the emulated kernels are built with
// AddressSanitizer and the alignment and bounds checks (FOT_CUDA_EMULATOR_MEMCHECK), a kernel
// that touches memory outside what it was given must abort the test that runs it, as
// compute-sanitizer's memcheck (or the hardware's "misaligned address") would on a GPU. Each
// test makes one such fault and expects the report, after the same launch without the fault
// ran clean: a real kernel reading past a cudaMalloc, and minimal kernels that step outside
// dynamic shared memory, a static shared array or a register array, copy past a cudaMalloc
// with cp.async, or load a misaligned 16-byte vector. Without the memcheck (a build with it
// off, or under FOT_SANITIZE) they skip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda_runtime.h"  // the emulator's: emu::Launch, emu::dynamic_smem
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/ops.h"

namespace {

#if defined(FOT_EMU_MEMCHECK_TEST)
constexpr bool kMemcheck = true;
#else
constexpr bool kMemcheck = false;
#endif

class EmulatedMemcheck : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!kMemcheck) GTEST_SKIP() << "built without FOT_CUDA_EMULATOR_MEMCHECK";
        // Earlier launches may have started worker threads: each death check runs in a fresh
        // process instead of a fork of this one.
        GTEST_FLAG_SET(death_test_style, "threadsafe");
    }
};

float* device_floats(int64_t n, float value) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, static_cast<size_t>(n) * sizeof(float)), cudaSuccess);
    std::vector<float> host(static_cast<size_t>(n), value);
    EXPECT_EQ(cudaMemcpy(p, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
    return static_cast<float*>(p);
}

TEST_F(EmulatedMemcheck, AKernelReadingPastACudaMallocAborts) {
    constexpr int64_t n = 1000;  // not a multiple of any vector width or block
    float* a = device_floats(n, 1.f);
    float* b = device_floats(n, 2.f);
    float* short_b = device_floats(n - 1, 2.f);
    float* out = device_floats(n, 0.f);
    fot::kernels::cuda::add(out, a, b, n, nullptr);
    std::vector<float> got(n);
    ASSERT_EQ(cudaMemcpy(got.data(), out, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(got[n - 1], 3.f);
    EXPECT_DEATH(fot::kernels::cuda::add(out, a, short_b, n, nullptr), "heap-buffer-overflow");
    for (float* p : {a, b, short_b, out}) cudaFree(p);
}

__global__ void fill_shared(float* out, int offset) {
    float* s = emu::dynamic_smem<float>();
    s[threadIdx.x + offset] = 1.f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}

TEST_F(EmulatedMemcheck, AKernelWritingPastItsDynamicSharedMemoryAborts) {
    float* out = device_floats(64, 0.f);
    emu::Launch(1, 64, 64 * sizeof(float))(fill_shared, out, 0);
    EXPECT_DEATH(emu::Launch(1, 64, 64 * sizeof(float))(fill_shared, out, 1),
                 "heap-buffer-overflow");
    cudaFree(out);
}

__global__ void index_arrays(float* out, int shared_at, int register_at) {
    __shared__ float tile[32];
    float regs[4] = {1.f, 2.f, 3.f, 4.f};
    tile[(threadIdx.x + shared_at) % 64] = regs[(threadIdx.x + register_at) % 8];
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x];
}

TEST_F(EmulatedMemcheck, AKernelIndexingPastAStaticSharedOrARegisterArrayAborts) {
    float* out = device_floats(32, 0.f);
    emu::Launch(1, 4)(index_arrays, out, 0, 0);
    EXPECT_DEATH(emu::Launch(1, 32)(index_arrays, out, 5, 0),
                 "out of bounds for type 'float \\[32\\]'");
    EXPECT_DEATH(emu::Launch(1, 4)(index_arrays, out, 0, 1),
                 "out of bounds for type 'float \\[4\\]'");
    cudaFree(out);
}

__global__ void copy_async(float* out, const float* in) {
    float* s = emu::dynamic_smem<float>();
    fot::kernels::cuda::mma::cp_async<16>(s + 4 * threadIdx.x, in + 4 * threadIdx.x, true);
    fot::kernels::cuda::mma::cp_async_commit();
    fot::kernels::cuda::mma::cp_async_wait<0>();
    __syncthreads();
    out[threadIdx.x] = s[4 * threadIdx.x + 3];
}

// The emulator itself makes cp.async's copies (emu.cpp, not instrumented): it checks them.
TEST_F(EmulatedMemcheck, ACpAsyncReadingPastACudaMallocAborts) {
    float* in = device_floats(4 * 32, 1.f);
    float* short_in = device_floats(4 * 32 - 1, 1.f);
    float* out = device_floats(32, 0.f);
    emu::Launch(1, 32, 4 * 32 * sizeof(float))(copy_async, out, in);
    EXPECT_DEATH(emu::Launch(1, 32, 4 * 32 * sizeof(float))(copy_async, out, short_in),
                 "cp.async reads 16 bytes outside");
    for (float* p : {in, short_in, out}) cudaFree(p);
}

__global__ void load_vector(float* out, const float* in, int misalign) {
    const uint4 v = *reinterpret_cast<const uint4*>(in + 4 * threadIdx.x + misalign);
    out[threadIdx.x] = static_cast<float>(v.x & 1u);
}

TEST_F(EmulatedMemcheck, AMisalignedVectorLoadAborts) {
    float* in = device_floats(4 * 32 + 4, 1.f);
    float* out = device_floats(32, 0.f);
    emu::Launch(1, 32)(load_vector, out, in, 0);
    EXPECT_DEATH(emu::Launch(1, 32)(load_vector, out, in, 1), "misaligned address");
    cudaFree(in);
    cudaFree(out);
}

// Not the memcheck, every emulator build: device memory that was never written reads as NaN
// (0xff bytes), so a kernel that uses it spreads NaN into what a test compares.
TEST(EmulatedInitcheck, NeverWrittenDeviceMemoryReadsAsNaN) {
    float* a = device_floats(64, 1.f);
    void* fresh = nullptr;
    ASSERT_EQ(cudaMalloc(&fresh, 64 * sizeof(float)), cudaSuccess);
    float* out = device_floats(64, 0.f);
    fot::kernels::cuda::add(out, a, static_cast<const float*>(fresh), 64, nullptr);
    std::vector<float> got(64);
    ASSERT_EQ(cudaMemcpy(got.data(), out, 64 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    for (float v : got) EXPECT_TRUE(std::isnan(v)) << v;
    for (void* p : {static_cast<void*>(a), fresh, static_cast<void*>(out)}) cudaFree(p);
}

}  // namespace
