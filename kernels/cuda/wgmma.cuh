// Warpgroup-level tensor-core instructions of sm_90a (wgmma.mma_async), wrapped like mma.cuh
// so that the CUDA emulator (kernels/cuda/emu/emu_wgmma.h) implements each one from the PTX
// ISA. Only what the tensor-core attention uses: bf16 operands, fp32 accumulators, A in
// registers (mma_rs) or in shared memory (mma_ss, K-major, laid out as a K-major B with rows
// m for n), B in shared memory, without swizzling. Compiled into device code only for sm_90a
// (kernels/cuda/CMakeLists.txt builds the files that use it for that architecture alone).
//
// Layouts (PTX ISA "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"):
//  - The 128 threads of a warpgroup compute D (64 x N) += A (64 x 16) * B (16 x N). Warp w of
//    the warpgroup holds rows 16 w .. 16 w + 15 of A and D, in mma.m16n8k16's fragment layouts
//    (mma.cuh): A's four registers as there, and D's n-tile j (columns 8 j .. 8 j + 7) in
//    d[4 j .. 4 j + 3] as an m16n8 accumulator.
//  - B is read from shared memory through a 64-bit descriptor (desc()): without swizzling,
//    B is made of "core matrices" of 8 rows x 16 bytes, each 128 contiguous bytes. K-major B
//    (kTransB false): a core-matrix row is one n (8 consecutive k, 16 bytes); MN-major B
//    (kTransB true): a row is one k (8 consecutive n). Either way the leading byte offset
//    (lbo) is the distance between core matrices adjacent in k, the stride byte offset (sbo)
//    between core matrices adjacent in n; start address, lbo and sbo are 16-byte aligned.
//  - Order: fence() before the first wgmma that reads registers written since the last one;
//    commit() closes a group of issued wgmmas; wait<N>() waits until at most N groups are
//    pending. Until then D must not be read and A and B must not be written. Shared memory
//    written by ordinary stores or cp.async must be made visible to wgmma with
//    fence_proxy_async() (then a barrier) first.
// Included by .cu files only.
#pragma once

#include <cstdint>

#include "kernels/cuda/mma.cuh"

namespace fot::kernels::cuda::wg {

// The descriptor's fields: start address, lbo and sbo in 16-byte units (14 bits each, bits 0,
// 16 and 32), base offset 0 and swizzle mode 0 (none).
__host__ __device__ constexpr uint64_t pack_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return static_cast<uint64_t>((addr & 0x3ffffu) >> 4) |
           (static_cast<uint64_t>((lbo & 0x3ffffu) >> 4) << 16) |
           (static_cast<uint64_t>((sbo & 0x3ffffu) >> 4) << 32);
}

}  // namespace fot::kernels::cuda::wg

#if defined(__CUDACC__)

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FOT_WGMMA_PTX 1
#endif

namespace fot::kernels::cuda::wg {

__device__ __forceinline__ uint64_t desc(const void* smem, uint32_t lbo, uint32_t sbo) {
    return pack_desc(mma::smem_addr(smem), lbo, sbo);
}

__device__ __forceinline__ void fence() {
#if defined(FOT_WGMMA_PTX)
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void commit() {
#if defined(FOT_WGMMA_PTX)
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int kPending>
__device__ __forceinline__ void wait() {
#if defined(FOT_WGMMA_PTX)
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}
// Shared memory written through the generic proxy (stores, cp.async) becomes visible to the
// async proxy that wgmma reads through.
__device__ __forceinline__ void fence_proxy_async() {
#if defined(FOT_WGMMA_PTX)
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps the compiler from moving reads of the accumulators above a wait (it sees them as
// written by the wgmma instruction) or their writes below a wgmma.
template <int kN>
__device__ __forceinline__ void fence_operands(float (&d)[kN]) {
#pragma unroll
    for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// d (64 x N) = a (64 x 16) * B (16 x N) + (acc ? d : 0); N in {64, 104, 128}.

template <int N, bool kTransB>
__device__ __forceinline__ void mma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b,
                                       bool acc) {
    static_assert(N == 64 || N == 104 || N == 128, "mma_rs: n of 64, 104 or 128");
#if defined(FOT_WGMMA_PTX)
    if constexpr (N == 64) {
        asm volatile(
            "{\n.reg .pred p;\n"
            "setp.ne.b32 p, %37, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, "
            "%8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, "
            "%24, %25, %26, %27, %28, %29, %30, %31"
            "}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
              "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),
              "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),
              "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
              "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
              "+f"(d[31])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(static_cast<int>(acc)),
              "n"(kTransB ? 1 : 0));
    } else if constexpr (N == 104) {
        asm volatile(
            "{\n.reg .pred p;\n"
            "setp.ne.b32 p, %57, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n104k16.f32.bf16.bf16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, "
            "%8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, "
            "%24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, "
            "%40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51"
            "}, {%52, %53, %54, %55}, %56, p, 1, 1, %58;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
              "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),
              "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),
              "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
              "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
              "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
              "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
              "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
              "+f"(d[49]), "+f"(d[50]), "+f"(d[51])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(static_cast<int>(acc)),
              "n"(kTransB ? 1 : 0));
    } else if constexpr (N == 128) {
        asm volatile(
            "{\n.reg .pred p;\n"
            "setp.ne.b32 p, %69, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, "
            "%8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, "
            "%24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, "
            "%40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, "
            "%56, %57, %58, %59, %60, %61, %62, %63"
            "}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
              "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),
              "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),
              "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
              "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
              "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
              "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
              "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
              "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]),
              "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]),
              "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(static_cast<int>(acc)),
              "n"(kTransB ? 1 : 0));
    }
#else
    __trap();  // wgmma needs sm_90a device code
#endif
}

// d (64 x N) = A (64 x 16, descriptor, K-major) * B (16 x N, descriptor, K-major) +
// (acc ? d : 0); N = 64.
template <int N>
__device__ void mma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool acc);

template <>
__device__ __forceinline__ void mma_ss<64>(float (&d)[32], uint64_t desc_a, uint64_t desc_b,
                                           bool acc) {
#if defined(FOT_WGMMA_PTX)
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, "
        "%8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31"
        "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
          "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
          "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
          "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(acc)));
#else
    __trap();  // wgmma needs sm_90a device code
#endif
}

}  // namespace fot::kernels::cuda::wg

#else
#include "emu_wgmma.h"  // the emulator's implementations (kernels/cuda/emu)
#endif
