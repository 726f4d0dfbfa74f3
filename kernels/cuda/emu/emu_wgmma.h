// CUDA emulator: the warpgroup-level instructions of kernels/cuda/wgmma.cuh, implemented from
// the PTX ISA (wgmma.mma_async with A in registers and B through a shared-memory descriptor
// without swizzling; wgmma.commit_group / wait_group). Included by wgmma.cuh when the .cu
// files are compiled as C++.
//  - mma_rs is issued by all 128 threads of a warpgroup; each warp's lanes issue it together
//    (.sync) and its 16 rows of D depend only on its rows of A and on B, so each warp's part
//    is its own operation: its A fragments and accumulators are gathered at the issue, and it
//    runs once, either at once or at the first wait() of one of its lanes that covers it (at
//    random), reading B from shared memory then. Code that lets B change before every warp
//    has waited, or issues before all of B is written (a missing barrier), gets wrong rows.
//  - Until then the accumulators read as NaN (the hardware leaves them undefined). A wgmma
//    issued while an earlier one is pending accumulates onto that one's result (the chained
//    accumulation the hardware orders), otherwise onto the registers at the issue.
//  - Descriptors must point into the block's dynamic shared memory, 16-byte aligned; the
//    address put into one is the offset from its start.
//  - Products of bf16 are exact in f32; each result adds its 16 products to the accumulator
//    one by one in k order, as emu_mma.h does for mma.m16n8k16 (so a sum over k-steps gives
//    the same bits with either instruction here; a device need not).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cuda_runtime.h"

namespace fot::kernels::cuda::wg {

inline uint64_t desc(const void* smem, uint32_t lbo, uint32_t sbo) {
    const auto* base = static_cast<const unsigned char*>(::emu::dynamic_smem_raw());
    const ptrdiff_t off = static_cast<const unsigned char*>(smem) - base;
    if (off < 0 || off >= 227 * 1024)
        ::emu::fail("wgmma descriptor: the operand is not in the block's dynamic shared memory");
    if (off % 16 != 0 || lbo % 16 != 0 || sbo % 16 != 0)
        ::emu::fail("wgmma descriptor: address or offsets not 16-byte aligned");
    if (lbo >= (1u << 18) || sbo >= (1u << 18))
        ::emu::fail("wgmma descriptor: an offset does not fit its 14-bit field");
    return pack_desc(static_cast<uint32_t>(off), lbo, sbo);
}

inline void fence() {}
inline void fence_proxy_async() {}
template <int kN>
inline void fence_operands(float (&)[kN]) {}
inline void commit() {
    ::emu::warpgroup_commit();
}
template <int kPending>
inline void wait(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::emu::warpgroup_wait(kPending, file, line);
}

namespace emu_detail {
// Element (k, n) of B through a descriptor without swizzling (wgmma.cuh's layouts).
inline float b_elem(uint64_t desc, bool trans, int k, int n) {
    if ((desc >> 62) != 0 || ((desc >> 49) & 7u) != 0)
        ::emu::fail("wgmma descriptor: swizzling and base offsets are not emulated");
    const uint64_t start = (desc & 0x3fffu) << 4, lbo = ((desc >> 16) & 0x3fffu) << 4,
                   sbo = ((desc >> 32) & 0x3fffu) << 4;
    const uint64_t in_core = trans ? (k % 8) * 16 + (n % 8) * 2 : (n % 8) * 16 + (k % 8) * 2;
    const uint64_t off = start + (k / 8) * lbo + (n / 8) * sbo + in_core;
    uint16_t bits;
    std::memcpy(&bits, static_cast<const unsigned char*>(::emu::dynamic_smem_raw()) + off, 2);
    return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}
inline float lo(uint32_t r) {
    return __uint_as_float(r << 16);
}
inline float hi(uint32_t r) {
    return __uint_as_float(r & 0xffff0000u);
}
}  // namespace emu_detail

namespace emu_detail {
// A lane's accumulators: where they live, scale-d, whether they come from a pending wgmma,
// and their values at the issue.
template <int N>
struct Acc {
    float* d;
    int acc;
    int chained;
    float din[N / 2];
};
template <int N>
inline Acc<N> take_acc(float (&d)[N / 2], bool acc) {
    Acc<N> a;
    a.d = d;
    a.acc = acc ? 1 : 0;
    a.chained = ::emu::warpgroup_pending() ? 1 : 0;
    std::memcpy(a.din, d, sizeof(a.din));
    for (float& x : d) x = std::numeric_limits<float>::quiet_NaN();  // undefined until wait()
    return a;
}
// The warp's 16 rows of D = its rows of A times B (read through desc_b now), into each lane's
// accumulators: ops[L].acc of lane L.
template <int N, typename Ops>
inline void warp_product(Ops* ops, const float (&A)[16][16], uint64_t desc_b, bool trans_b) {
    static float B[16][N];
    for (int k = 0; k < 16; ++k) {
        for (int n = 0; n < N; ++n) B[k][n] = b_elem(desc_b, trans_b, k, n);
    }
    for (int L = 0; L < 32; ++L) {
        const Acc<N>& a = ops[L].acc;
        if (a.acc != ops[0].acc.acc) ::emu::fail("wgmma: lanes of a warp passed different scale-d");
        const int row0 = L / 4, c = L % 4;
        for (int i = 0; i < N / 2; ++i) {
            const int row = row0 + ((i & 2) ? 8 : 0), col = 8 * (i / 4) + 2 * c + (i & 1);
            float s = !a.acc ? 0.f : a.chained ? a.d[i] : a.din[i];
            for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
            a.d[i] = s;
        }
    }
}
}  // namespace emu_detail

template <int N, bool kTransB>
inline void mma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, bool acc) {
    static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma n");
    struct Ops {
        uint32_t a[4];
        uint64_t desc;
        emu_detail::Acc<N> acc;
    } mine;
    std::memcpy(mine.a, a, sizeof(mine.a));
    mine.desc = desc_b;
    mine.acc = emu_detail::take_acc<N>(d, acc);
    ::emu::warpgroup_issue(&mine, sizeof(Ops), [](const unsigned char* all) {
        using namespace emu_detail;
        Ops ops[32];
        std::memcpy(ops, all, sizeof(ops));
        float A[16][16];  // the warp's rows of A, from its lanes' fragments
        for (int L = 0; L < 32; ++L) {
            if (ops[L].desc != ops[0].desc)
                ::emu::fail("wgmma: lanes of a warp passed different descriptors");
            const int row = L / 4, c = L % 4;
            const uint32_t* f = ops[L].a;
            A[row][2 * c] = lo(f[0]);
            A[row][2 * c + 1] = hi(f[0]);
            A[row + 8][2 * c] = lo(f[1]);
            A[row + 8][2 * c + 1] = hi(f[1]);
            A[row][2 * c + 8] = lo(f[2]);
            A[row][2 * c + 9] = hi(f[2]);
            A[row + 8][2 * c + 8] = lo(f[3]);
            A[row + 8][2 * c + 9] = hi(f[3]);
        }
        warp_product<N>(ops, A, ops[0].desc, kTransB);
    });
}

template <int N>
inline void mma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool acc) {
    static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma n");
    struct Ops {
        uint64_t desc_a, desc_b;
        int warp;  // of the warpgroup: rows 16 warp .. of A and D
        emu_detail::Acc<N> acc;
    } mine;
    mine.desc_a = desc_a;
    mine.desc_b = desc_b;
    mine.warp = static_cast<int>(threadIdx.x / 32 % 4);
    mine.acc = emu_detail::take_acc<N>(d, acc);
    ::emu::warpgroup_issue(&mine, sizeof(Ops), [](const unsigned char* all) {
        using namespace emu_detail;
        Ops ops[32];
        std::memcpy(ops, all, sizeof(ops));
        for (int L = 0; L < 32; ++L) {
            if (ops[L].desc_a != ops[0].desc_a || ops[L].desc_b != ops[0].desc_b)
                ::emu::fail("wgmma: lanes of a warp passed different descriptors");
        }
        float A[16][16];  // the warp's rows of A: element (m, k) as K-major B's (k, n = m)
        for (int r = 0; r < 16; ++r) {
            for (int k = 0; k < 16; ++k)
                A[r][k] = b_elem(ops[0].desc_a, false, k, 16 * ops[0].warp + r);
        }
        warp_product<N>(ops, A, ops[0].desc_b, false);
    });
}

}  // namespace fot::kernels::cuda::wg
