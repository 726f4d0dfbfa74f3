// CUDA emulator: the warp-level instructions of kernels/cuda/mma.cuh, implemented from the
// PTX ISA's definitions (fragment layouts of mma.m16n8k16, ldmatrix and ldmatrix.trans,
// cp.async groups). Included by mma.cuh when the .cu files are compiled as C++.
//  - mma / ldmatrix are warp collectives: all 32 lanes must call them (as .sync.aligned
//    requires); each lane's operands are gathered, the full matrices rebuilt, and each lane
//    computes the elements its fragment holds. Products of bf16 are exact in f32; the 16
//    products are added to the accumulator one by one in k order.
//  - ldmatrix checks that each row address is 16-byte aligned.
//  - cp.async: each copy completes at a random (seeded) moment between its issue and the
//    cp_async_wait that covers it, never later: code that reads the destination before the
//    wait, or overwrites a buffer other threads may still read, sees wrong data.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "cuda_runtime.h"

namespace fot::kernels::cuda::mma {

namespace emu_detail {
inline float lo(uint32_t r) {
    return __uint_as_float(r << 16);
}
inline float hi(uint32_t r) {
    return __uint_as_float(r & 0xffff0000u);
}
inline int lane() {
    return static_cast<int>(threadIdx.x & 31u);
}
inline uint16_t read_b16(const void* row, int i) {
    uint16_t v;
    std::memcpy(&v, static_cast<const char*>(row) + 2 * i, 2);
    return v;
}
inline void gather_rows(const void* row, const void* rows[32]) {
    if (reinterpret_cast<uintptr_t>(row) % 16 != 0)
        ::emu::fail("ldmatrix: a row address is not 16-byte aligned");
    ::emu::warp_all_gather(&row, sizeof(row), rows);
}
}  // namespace emu_detail

inline void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    using namespace emu_detail;
    struct Frag {
        uint32_t a[4], b[2];
    } mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}}, all[32];
    ::emu::warp_all_gather(&mine, sizeof(Frag), all);
    float A[16][16], B[16][8];
    for (int L = 0; L < 32; ++L) {
        const int g = L >> 2, c = L & 3;
        const Frag& f = all[L];
        A[g][2 * c] = lo(f.a[0]);
        A[g][2 * c + 1] = hi(f.a[0]);
        A[g + 8][2 * c] = lo(f.a[1]);
        A[g + 8][2 * c + 1] = hi(f.a[1]);
        A[g][2 * c + 8] = lo(f.a[2]);
        A[g][2 * c + 9] = hi(f.a[2]);
        A[g + 8][2 * c + 8] = lo(f.a[3]);
        A[g + 8][2 * c + 9] = hi(f.a[3]);
        B[2 * c][g] = lo(f.b[0]);
        B[2 * c + 1][g] = hi(f.b[0]);
        B[2 * c + 8][g] = lo(f.b[1]);
        B[2 * c + 9][g] = hi(f.b[1]);
    }
    const int g = lane() >> 2, c = lane() & 3;
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i >= 2 ? 8 : 0), col = 2 * c + (i & 1);
        float acc = d[i];
        for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
        d[i] = acc;
    }
}

// Register j < kMats of this lane: matrix j's row lane / 4, elements 2 (lane % 4) and + 1.
template <int kMats>
inline void ldmatrix_rows(uint32_t* r, const void* row) {
    using namespace emu_detail;
    const void* rows[32];
    gather_rows(row, rows);
    const int L = lane();
    for (int j = 0; j < kMats; ++j) {
        const void* p = rows[j * 8 + (L >> 2)];
        r[j] =
            read_b16(p, 2 * (L & 3)) | (static_cast<uint32_t>(read_b16(p, 2 * (L & 3) + 1)) << 16);
    }
}
inline void ldmatrix_x4(uint32_t r[4], const void* row) {
    ldmatrix_rows<4>(r, row);
}
inline void ldmatrix_x2(uint32_t r[2], const void* row) {
    ldmatrix_rows<2>(r, row);
}
// .trans: register j holds matrix j's rows 2 (lane % 4) and + 1 at column lane / 4.
template <int kMats>
inline void ldmatrix_rows_trans(uint32_t* r, const void* row) {
    using namespace emu_detail;
    const void* rows[32];
    gather_rows(row, rows);
    const int L = lane();
    for (int j = 0; j < kMats; ++j) {
        const uint16_t a = read_b16(rows[j * 8 + 2 * (L & 3)], L >> 2);
        const uint16_t b = read_b16(rows[j * 8 + 2 * (L & 3) + 1], L >> 2);
        r[j] = a | (static_cast<uint32_t>(b) << 16);
    }
}
inline void ldmatrix_x4_trans(uint32_t r[4], const void* row) {
    ldmatrix_rows_trans<4>(r, row);
}
inline void ldmatrix_x2_trans(uint32_t r[2], const void* row) {
    ldmatrix_rows_trans<2>(r, row);
}

template <int kBytes>
inline void cp_async(void* dst, const void* src, bool valid) {
    static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
    if (reinterpret_cast<uintptr_t>(dst) % kBytes != 0 ||
        (valid && reinterpret_cast<uintptr_t>(src) % kBytes != 0))
        ::emu::fail("cp.async: misaligned address");
    ::emu::cp_async(dst, valid ? src : nullptr, kBytes);
}
inline void cp_async_commit() {
    ::emu::cp_async_commit();
}
template <int kPending>
inline void cp_async_wait() {
    ::emu::cp_async_wait(kPending);
}

inline uint32_t pack_bf16(float lo, float hi) {
    return static_cast<uint32_t>(f32_to_bf16_bits(lo)) |
           (static_cast<uint32_t>(f32_to_bf16_bits(hi)) << 16);
}

}  // namespace fot::kernels::cuda::mma
