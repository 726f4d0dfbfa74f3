// bf16 x bf16 GEMM with fp32 accumulation on the AVX512_BF16 dot-product instruction
// (vdpbf16ps), for the `fast` precision with bf16 weights (ops.h: matmul_bf16_dot).
//
// Layout ("VNNI" pairs): vdpbf16ps multiplies 16 lanes of bf16 pairs and adds both products
// to the lane's fp32 sum. A lane holds the pair (k, k+1) of one output column n, so a block
// of 16 columns needs w packed as [K/2][16] pairs; every x row contributes its pair (k, k+1)
// broadcast to all lanes. Per thread: a panel of kPanel = 32 columns of w is packed once
// ([K/2][32] pairs: K x 64 bytes, L2-sized) and kRows = 8 rows of x at a time run over it,
// 16 zmm accumulators (8 rows x 2 column blocks), no horizontal sums.
//
// The arithmetic of one step is fixed by the instruction (Intel SDM, VDPBF16PS): per lane,
// acc += x_odd * w_odd, then acc += x_even * w_even, each a rounded fp32 add of an exact
// product, with denormal inputs and results flushed to zero. The emulated micro-kernel does
// exactly that in scalar code, so the packing, blocking and edge handling are tested on CPUs
// without the instruction; on CPUs with it, the test compares both.
//
// Only the micro-kernel is compiled for AVX-512 (a target attribute, not a per-file flag: an
// AVX-512 copy of an inline library function must never be linked into code that runs on
// CPUs without it), and it is reached only after a run-time CPUID check.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FOT_HAVE_BF16_DOT_KERNEL 1
#endif

namespace fot::kernels::cpu {
namespace {

constexpr int kRows = 8;    // x rows per micro-kernel call
constexpr int kPanel = 32;  // w columns per packed panel (two 16-lane blocks)

// bf16 bits of x (round to nearest even, as fot::f32_to_bf16) packed as pairs: a row of K
// values becomes Kp = ceil(K / 2) 32-bit words, (k even) in the low half, (k odd) in the high.
inline uint32_t pair_bits(uint16_t lo, uint16_t hi) {
    return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

// Micro-kernel contract: out[r * ldo + c] = sum over kp < Kp of the pair products of
// x[r * ldx + kp] and w[kp * kPanel + c], for r < rows (<= kRows) and c < cols (<= kPanel);
// the sum runs over kp in order, each step as vdpbf16ps does it.
using MicroKernel = void (*)(float* out, int64_t ldo, const uint32_t* x, int64_t ldx,
                             const uint32_t* w, int64_t Kp, int rows, int cols);

inline float bf16_lo(uint32_t p) {
    uint32_t b = p << 16;
    if ((b & 0x7f800000u) == 0) b &= 0x80000000u;  // denormal in: zero (DAZ)
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
inline float bf16_hi(uint32_t p) {
    return bf16_lo(p >> 16);
}
inline float flush(float f) {
    return std::fabs(f) < 0x1p-126f ? std::copysign(0.f, f) : f;  // denormal out: zero (FTZ)
}

void micro_emulated(float* out, int64_t ldo, const uint32_t* x, int64_t ldx, const uint32_t* w,
                    int64_t Kp, int rows, int cols) {
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c) {
            float acc = 0.f;
            for (int64_t kp = 0; kp < Kp; ++kp) {
                const uint32_t a = x[r * ldx + kp], b = w[kp * kPanel + c];
                acc = flush(acc + bf16_hi(a) * bf16_hi(b));  // exact products: no FMA question
                acc = flush(acc + bf16_lo(a) * bf16_lo(b));
            }
            out[r * ldo + c] = acc;
        }
    }
}

#if defined(FOT_HAVE_BF16_DOT_KERNEL)
__attribute__((target("avx512f,avx512bf16"))) void micro_avx512(float* out, int64_t ldo,
                                                                const uint32_t* x, int64_t ldx,
                                                                const uint32_t* w, int64_t Kp,
                                                                int rows, int cols) {
    __m512 acc[kRows][2];
    for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t kp = 0; kp < Kp; ++kp) {
        const __m512i w0 = _mm512_loadu_si512(w + kp * kPanel);
        const __m512i w1 = _mm512_loadu_si512(w + kp * kPanel + 16);
        // Rows past `rows` read row 0 again (always valid) and are not stored.
        for (int r = 0; r < kRows; ++r) {
            const int rr = r < rows ? r : 0;
            const __m512i xb = _mm512_set1_epi32(static_cast<int>(x[rr * ldx + kp]));
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)xb, (__m512bh)w0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], (__m512bh)xb, (__m512bh)w1);
        }
    }
    for (int r = 0; r < rows; ++r) {
        if (cols == kPanel) {
            _mm512_storeu_ps(out + r * ldo, acc[r][0]);
            _mm512_storeu_ps(out + r * ldo + 16, acc[r][1]);
        } else {
            alignas(64) float tmp[kPanel];
            _mm512_store_ps(tmp, acc[r][0]);
            _mm512_store_ps(tmp + 16, acc[r][1]);
            std::memcpy(out + r * ldo, tmp, sizeof(float) * static_cast<size_t>(cols));
        }
    }
}
#endif

void gemm(float* out, const float* x, const uint16_t* w, int64_t T, int64_t N, int64_t K,
          MicroKernel micro) {
    const int64_t Kp = (K + 1) / 2;
    // x rounded to bf16, as pairs (an odd K gets a zero partner).
    // Grow-only, per calling thread (the OpenMP workers below use its pointer).
    static thread_local std::vector<uint32_t> xp_buf;
    xp_buf.resize(static_cast<size_t>(T * Kp));
    uint32_t* const xp = xp_buf.data();
#pragma omp parallel for schedule(static) if (T * K > kParallelMinWork)
    for (int64_t t = 0; t < T; ++t) {
        const float* xr = x + t * K;
        uint32_t* dst = xp + t * Kp;
        for (int64_t kp = 0; kp < Kp; ++kp) {
            const int64_t k = 2 * kp;
            dst[kp] = pair_bits(f32_to_bf16(xr[k]), k + 1 < K ? f32_to_bf16(xr[k + 1]) : 0);
        }
    }
    const int64_t panels = (N + kPanel - 1) / kPanel;
#pragma omp parallel if (T * N * K > kParallelMinWork)
    {
        std::vector<uint32_t> wp(static_cast<size_t>(Kp * kPanel));
        alignas(64) float tile[kRows * kPanel];
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < panels; ++p) {
            const int64_t n0 = p * kPanel;
            const int cols = static_cast<int>(std::min<int64_t>(kPanel, N - n0));
            // Pack: wp[kp][c] = pair (2kp, 2kp + 1) of column n0 + c; missing columns are zero.
            for (int c = 0; c < kPanel; ++c) {
                if (c >= cols) {
                    for (int64_t kp = 0; kp < Kp; ++kp) wp[kp * kPanel + c] = 0;
                    continue;
                }
                const uint16_t* wr = w + (n0 + c) * K;
                for (int64_t kp = 0; kp < Kp; ++kp) {
                    const int64_t k = 2 * kp;
                    wp[kp * kPanel + c] = pair_bits(wr[k], k + 1 < K ? wr[k + 1] : 0);
                }
            }
            for (int64_t t0 = 0; t0 < T; t0 += kRows) {
                const int rows = static_cast<int>(std::min<int64_t>(kRows, T - t0));
                if (cols == kPanel) {
                    micro(out + t0 * N + n0, N, xp + t0 * Kp, Kp, wp.data(), Kp, rows, cols);
                } else {  // the last panel: through a tile, so no column past N is written
                    micro(tile, kPanel, xp + t0 * Kp, Kp, wp.data(), Kp, rows, cols);
                    for (int r = 0; r < rows; ++r) {
                        std::memcpy(out + (t0 + r) * N + n0, tile + r * kPanel,
                                    sizeof(float) * static_cast<size_t>(cols));
                    }
                }
            }
        }
    }
}

bool detect_bf16_dot() {
    const char* e = std::getenv("FOT_CPU_BF16_DOT");
    if (e && std::strcmp(e, "0") == 0) return false;  // opt out (comparisons, bug hunts)
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

}  // namespace

bool bf16_dot_available() {
    static const bool yes = detect_bf16_dot();
    return yes;
}

void matmul_bf16_dot(float* out, const float* x, const uint16_t* w, int64_t T, int64_t N, int64_t K,
                     Bf16DotKernel kernel) {
    if (T <= 0 || N <= 0) return;
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
    if (kernel == Bf16DotKernel::kNative && bf16_dot_available()) {
        gemm(out, x, w, T, N, K, micro_avx512);
        return;
    }
#endif
    gemm(out, x, w, T, N, K, micro_emulated);
}

}  // namespace fot::kernels::cpu
