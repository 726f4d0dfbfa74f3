// Warp-level tensor-core and async-copy instructions, wrapped in small device functions so
// that the CUDA emulator (kernels/cuda/emu/emu_mma.h) can implement each one exactly, with
// the fragment layouts of the PTX ISA ("Matrix fragments for mma.m16n8k16", "ldmatrix").
// Every kernel that uses tensor cores goes through these functions and nothing else.
//
// Fragment layouts (m16n8k16, bf16 operands, f32 accumulators; g = lane / 4, c = lane % 4):
//   A (16 x 16, row-major)  a[0]: (g, 2c..2c+1)      a[1]: (g+8, 2c..2c+1)
//                           a[2]: (g, 2c+8..2c+9)    a[3]: (g+8, 2c+8..2c+9)
//   B (16 x 8, "col")       b[0]: (k = 2c..2c+1, n = g)   b[1]: (k = 2c+8..2c+9, n = g)
//   C (16 x 8, f32)         c[0..1]: (g, 2c..2c+1)   c[2..3]: (g+8, 2c..2c+1)
// Each 32-bit register holds two bf16, the lower column (or k) in the low half.
// ldmatrix: lane i supplies the shared-memory address of row i % 8 of matrix i / 8 (16 bytes,
// 16-byte aligned; with .x2 lanes 0-15 only); register j of lane L receives matrix j's row L / 4,
// columns 2(L % 4) and 2(L % 4) + 1; with .trans, rows 2(L % 4) and 2(L % 4) + 1 of column L / 4
// instead. cp.async: copies of 4, 8 or 16 bytes into shared memory that complete only at
// cp_async_wait<N>() (all but the N most recent committed groups), then need a barrier before
// other threads read them.
// Included by .cu files only.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

#if defined(__CUDACC__)

namespace fot::kernels::cuda::mma {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// d = a * b + d.
__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4],
                                               const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row)));
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_addr(row)));
}

// Copies kBytes (4, 8 or 16) from global src to shared dst; when !valid, writes kBytes zeros
// instead and does not read src.
template <int kBytes>
__device__ __forceinline__ void cp_async(void* dst, const void* src, bool valid) {
    static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
    const int src_bytes = valid ? kBytes : 0;
    if constexpr (kBytes == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                     "l"(src), "r"(src_bytes));
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_addr(dst)),
                     "l"(src), "n"(kBytes), "r"(src_bytes));
    }
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Two floats rounded to bf16 (nearest even; one cvt instruction) in one register, `lo` in the
// low half: an A or B fragment register.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

}  // namespace fot::kernels::cuda::mma

#else
#include "emu_mma.h"  // the emulator's exact implementations (kernels/cuda/emu)
#endif
