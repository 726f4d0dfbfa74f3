// bf16 x bf16 GEMM with fp32 accumulation on the AVX512_BF16 dot-product instruction
// (vdpbf16ps) or on AMX tiles (tdpbf16ps), for the `fast` precision with bf16 weights
// (ops.h: matmul_bf16_dot).
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
// AMX: the same packed pairs are what tdpbf16ps reads. A tile of x is 16 rows x 16 pairs
// (64 bytes of each row of the packed x), a tile of w 16 pairs x 16 columns (half a panel row,
// 128 bytes apart), so the micro-kernel loads both straight from the packing: 32 rows x 32
// columns per call in 4 accumulator tiles, 2 x tiles and 2 w tiles (the 8 tile registers), K
// in steps of 16 pairs (the packing is zero-padded to that, and x to 32 rows). tdpbf16ps adds
// each pair's even product, then its odd one, in the Intel SDM's description of TDPBF16PS,
// with the same denormal flushing; the emulated AMX micro-kernel does that in scalar code.
// The hardware sums otherwise (on the developer machine's Xeon it matched that description
// bit for bit on 4 of 48 test shapes, and neither one rounding per pair nor one per 16 pairs
// matched either), so the native kernel is held to the fp32 summation bound, not to bits. On a Xeon
// with AMX (this project's developer machine, 2026-11-30) tdpbf16ps ran 3.5 TFLOP/s per core
// against 0.11 for vdpbf16ps and 0.22 for fp32 FMA, so AMX, where the CPU and OS allow it, comes
// first.
//
// Only the micro-kernels are compiled for AVX-512 or AMX (a target attribute, not a per-file
// flag: an AVX-512 copy of an inline library function must never be linked into code that
// runs on CPUs without it), and they are reached only after a run-time CPUID check (and, for
// AMX, the kernel's permission to use the tile state: arch_prctl ARCH_REQ_XCOMP_PERM).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"
#include "runtime/core/status.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FOT_HAVE_BF16_DOT_KERNEL 1
#endif

namespace fot::kernels::cpu {
namespace {

constexpr int kRows = 8;       // x rows per AVX-512 micro-kernel call
constexpr int kPanel = 32;     // w columns per packed panel (two 16-lane blocks)
constexpr int kAmxRows = 32;   // x rows per AMX micro-kernel call (two tiles of 16)
constexpr int kAmxPairs = 16;  // pairs per AMX step (a tile row: 64 bytes)

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

// tdpbf16ps's order (Intel SDM): per pair, the even product, then the odd one.
void micro_amx_emulated(float* out, int64_t ldo, const uint32_t* x, int64_t ldx, const uint32_t* w,
                        int64_t Kp, int rows, int cols) {
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c) {
            float acc = 0.f;
            for (int64_t kp = 0; kp < Kp; ++kp) {
                const uint32_t a = x[r * ldx + kp], b = w[kp * kPanel + c];
                acc = flush(acc + bf16_lo(a) * bf16_lo(b));
                acc = flush(acc + bf16_hi(a) * bf16_hi(b));
            }
            out[r * ldo + c] = acc;
        }
    }
}

// The AMX kernel with the weights as the tiles' first operand (gemm_wa below): C'[i][j] =
// sum over pairs of w row i and packed x column j, for i < rows_n weight rows (K apart) and
// j < rows_t tokens (ldxv words apart per pair row), stored transposed: out[j * ldo + i].
using MicroKernelWA = void (*)(float* out, int64_t ldo, const uint16_t* w, int64_t K,
                               const uint32_t* xv, int64_t ldxv, int rows_n, int rows_t);

void micro_amx_wa_emulated(float* out, int64_t ldo, const uint16_t* w, int64_t K,
                           const uint32_t* xv, int64_t ldxv, int rows_n, int rows_t) {
    const int64_t Kp = K / 2;
    for (int i = 0; i < rows_n; ++i) {
        for (int j = 0; j < rows_t; ++j) {
            float acc = 0.f;
            for (int64_t kp = 0; kp < Kp; ++kp) {
                const uint32_t a = pair_bits(w[i * K + 2 * kp], w[i * K + 2 * kp + 1]);
                const uint32_t b = xv[kp * ldxv + j];
                acc = flush(acc + bf16_lo(a) * bf16_lo(b));
                acc = flush(acc + bf16_hi(a) * bf16_hi(b));
            }
            out[j * ldo + i] = acc;
        }
    }
}

#if defined(FOT_HAVE_BF16_DOT_KERNEL)
// The tile shapes of micro_amx: tiles 0-3 the 2 x 2 fp32 accumulators (16 rows x 16 columns),
// 4-5 x (16 rows x 16 pairs), 6-7 w (16 pairs x 16 columns); 64 bytes per tile row.
struct alignas(64) AmxConfig {
    uint8_t palette = 1, start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

__attribute__((target("amx-tile,amx-bf16"))) void amx_begin() {
    static const AmxConfig config;
    _tile_loadconfig(&config);
}
__attribute__((target("amx-tile,amx-bf16"))) void amx_end() {
    _tile_release();
}

// x: kAmxRows rows (padded) ldx words apart; w: the panel, Kp (a multiple of kAmxPairs) pairs.
__attribute__((target("amx-tile,amx-bf16"))) void micro_amx(float* out, int64_t ldo,
                                                            const uint32_t* x, int64_t ldx,
                                                            const uint32_t* w, int64_t Kp, int rows,
                                                            int cols) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const int64_t sx = ldx * 4, sw = kPanel * 4;  // row strides in bytes
    for (int64_t kp = 0; kp < Kp; kp += kAmxPairs) {
        _tile_loadd(4, x + kp, sx);
        _tile_loadd(5, x + 16 * ldx + kp, sx);
        _tile_loadd(6, w + kp * kPanel, sw);
        _tile_loadd(7, w + kp * kPanel + 16, sw);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (rows == kAmxRows && cols == kPanel) {
        const int64_t so = ldo * 4;
        _tile_stored(0, out, so);
        _tile_stored(1, out + 16, so);
        _tile_stored(2, out + 16 * ldo, so);
        _tile_stored(3, out + 16 * ldo + 16, so);
        return;
    }
    alignas(64) float tile[kAmxRows * kPanel];
    _tile_stored(0, tile, kPanel * 4);
    _tile_stored(1, tile + 16, kPanel * 4);
    _tile_stored(2, tile + 16 * kPanel, kPanel * 4);
    _tile_stored(3, tile + 16 * kPanel + 16, kPanel * 4);
    for (int r = 0; r < rows; ++r) {
        std::memcpy(out + r * ldo, tile + r * kPanel, sizeof(float) * static_cast<size_t>(cols));
    }
}

// out[t * ldo + n] = c[n * ldc + t] for a 16 x 16 block: 4 stages of AVX-512 unpacks and lane
// shuffles instead of 256 scalar moves (with K = 64, attention's scores, the scalar
// transposition took longer than the tiles' arithmetic).
// GCC 12's AVX-512 headers trip its own -Wuninitialized here (GCC PR 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void transpose16(const float* c, float* out, int64_t ldo,
                                                    int64_t ldc = 16) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        const __m512 a = _mm512_loadu_ps(c + 2 * i * ldc),
                     b = _mm512_loadu_ps(c + (2 * i + 1) * ldc);
        t[2 * i] = _mm512_unpacklo_ps(a, b);  // per 128-bit lane: a0 b0 a1 b1
        t[2 * i + 1] = _mm512_unpackhi_ps(a, b);
    }
    for (int g = 0; g < 4; ++g) {  // rows 4g .. 4g + 3; u[4g + k]: column 4L + k in lane L
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d c2 = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c2));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c2));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int k = 0; k < 4; ++k) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);
        const __m512 v1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xdd);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xdd);
        _mm512_storeu_ps(out + k * ldo, _mm512_shuffle_f32x4(v0, w0, 0x88));
        _mm512_storeu_ps(out + (4 + k) * ldo, _mm512_shuffle_f32x4(v1, w1, 0x88));
        _mm512_storeu_ps(out + (8 + k) * ldo, _mm512_shuffle_f32x4(v0, w0, 0xdd));
        _mm512_storeu_ps(out + (12 + k) * ldo, _mm512_shuffle_f32x4(v1, w1, 0xdd));
    }
}
#pragma GCC diagnostic pop

// Vector packers for the native drivers (every CPU with AVX512_BF16 has AVX512BW;
// bf16_dot_available() checks both).
// vcvtne2ps2bf16 rounds to nearest even like f32_to_bf16 but reads f32 denormals as zero;
// a bf16 denormal is a zero to tdpbf16ps anyway, so the products are the same.
// dst[kp] = pair (2kp, 2kp + 1) of x[0, K) for kp < K / 32 * 16; returns the pairs done.
__attribute__((target("avx512f,avx512bf16"))) int64_t pack_pairs_avx512(uint32_t* dst,
                                                                        const float* x, int64_t K) {
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        const __m512 lo = _mm512_loadu_ps(x + k), hi = _mm512_loadu_ps(x + k + 16);
        _mm512_storeu_si512(dst + k / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    return k / 2;
}

// dst[c] = pair (r0[c], r1[c]) for c < 32: two rows of values interleaved.
__attribute__((target("avx512f,avx512bw"))) void interleave32_avx512(uint32_t* dst,
                                                                     const uint16_t* r0,
                                                                     const uint16_t* r1) {
    alignas(64) static const uint16_t lo_idx[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,
                                                    37, 6,  38, 7,  39, 8,  40, 9,  41, 10, 42,
                                                    11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    alignas(64) static const uint16_t hi_idx[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21,
                                                    53, 22, 54, 23, 55, 24, 56, 25, 57, 26, 58,
                                                    27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
    const __m512i a = _mm512_loadu_si512(r0), b = _mm512_loadu_si512(r1);
    _mm512_storeu_si512(dst, _mm512_permutex2var_epi16(a, _mm512_load_si512(lo_idx), b));
    _mm512_storeu_si512(dst + 16, _mm512_permutex2var_epi16(a, _mm512_load_si512(hi_idx), b));
}

// xv[kp][t0 + t] for 16 tokens t and all K / 2 pairs (K a multiple of 32): each token's 32
// values of a step converted to 16 pair words, the 16 x 16 words transposed (as floats).
__attribute__((target("avx512f,avx512bf16"))) void pack_tokens16_avx512(uint32_t* xv, int64_t ldxv,
                                                                        const float* x, int64_t K) {
    alignas(64) uint32_t rows[16 * 16];
    for (int64_t k = 0; k < K; k += 32) {
        for (int t = 0; t < 16; ++t) pack_pairs_avx512(rows + 16 * t, x + t * K + k, 32);
        transpose16(reinterpret_cast<const float*>(rows),
                    reinterpret_cast<float*>(xv + k / 2 * ldxv), ldxv);
    }
}

// 32 weight rows x 32 tokens: tiles 4-5 = w rows 0-15 / 16-31 read in place (32 bf16 of k per
// tile row, K * 2 bytes apart), 6-7 = tokens 0-15 / 16-31 of the packed x; K a multiple of 32.
// The four 16 x 16 results are transposed on their way out (tokens are out's rows).
__attribute__((target("amx-tile,amx-bf16,avx512f"))) void micro_amx_wa(float* out, int64_t ldo,
                                                                       const uint16_t* w, int64_t K,
                                                                       const uint32_t* xv,
                                                                       int64_t ldxv, int rows_n,
                                                                       int rows_t) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const int64_t sw = K * 2, sx = ldxv * 4;  // row strides in bytes
    for (int64_t k = 0; k < K; k += 2 * kAmxPairs) {
        const uint32_t* xk = xv + (k / 2) * ldxv;
        _tile_loadd(4, w + k, sw);
        _tile_loadd(5, w + 16 * K + k, sw);
        _tile_loadd(6, xk, sx);
        _tile_loadd(7, xk + 16, sx);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    alignas(64) float c[4][16 * 16];  // [n block * 2 + t block][n][t]
    _tile_stored(0, c[0], 64);
    _tile_stored(1, c[1], 64);
    _tile_stored(2, c[2], 64);
    _tile_stored(3, c[3], 64);
    if (rows_n == 32 && rows_t == 32) {
        transpose16(c[0], out, ldo);
        transpose16(c[1], out + 16 * ldo, ldo);
        transpose16(c[2], out + 16, ldo);
        transpose16(c[3], out + 16 * ldo + 16, ldo);
        return;
    }
    for (int j = 0; j < rows_t; ++j) {
        float* o = out + j * ldo;
        const float* cj = c[j >> 4] + (j & 15);
        const int n0 = std::min(rows_n, 16);
        for (int i = 0; i < n0; ++i) o[i] = cj[i * 16];
        const float* cj1 = c[2 + (j >> 4)] + (j & 15);
        for (int i = 16; i < rows_n; ++i) o[i] = cj1[(i - 16) * 16];
    }
}

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

// A micro-kernel and the blocking it needs: `rows` x rows per call, the pair count padded to
// a multiple of `pair_align` (zeros in x and w: they add nothing), x padded to whole calls of
// rows (zeros), and per-thread set-up around the calls (AMX: the tile configuration).
struct Kernel {
    MicroKernel micro;
    int rows;
    int pair_align;
    bool pad_rows;
    void (*begin)();
    void (*end)();
    bool vector_pack;  // the AVX-512 packers (native kernels only)
};

// w: [N][K] (a weight: row n holds column n's K values), or, with ldv > 0, [K][ldv] (row k
// holds the K-th values of every column: attention's V, out = x . v).
void gemm(float* out, const float* x, const uint16_t* w, int64_t T, int64_t N, int64_t K,
          const Kernel& kn, int64_t ldv = 0) {
    const int64_t Kp = (K + 1) / 2;
    const int64_t Kpa = (Kp + kn.pair_align - 1) / kn.pair_align * kn.pair_align;
    const int64_t Tp = kn.pad_rows ? (T + kn.rows - 1) / kn.rows * kn.rows : T;
    // x rounded to bf16, as pairs (an odd K gets a zero partner), Kpa words per row.
    // Grow-only, per calling thread (the OpenMP workers below use its pointer).
    static thread_local std::vector<uint32_t> xp_buf;
    xp_buf.resize(static_cast<size_t>(Tp * Kpa));
    uint32_t* const xp = xp_buf.data();
#pragma omp parallel for schedule(static) if (T * K > kParallelMinWork)
    for (int64_t t = 0; t < Tp; ++t) {
        uint32_t* dst = xp + t * Kpa;
        if (t >= T) {
            std::fill(dst, dst + Kpa, 0u);
            continue;
        }
        const float* xr = x + t * K;
        int64_t kp = 0;
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
        if (kn.vector_pack) kp = pack_pairs_avx512(dst, xr, K);
#endif
        for (; kp < Kp; ++kp) {
            const int64_t k = 2 * kp;
            dst[kp] = pair_bits(f32_to_bf16(xr[k]), k + 1 < K ? f32_to_bf16(xr[k + 1]) : 0);
        }
        std::fill(dst + Kp, dst + Kpa, 0u);
    }
    const int64_t panels = (N + kPanel - 1) / kPanel;
#pragma omp parallel if (T * N * K > kParallelMinWork)
    {
        std::vector<uint32_t> wp(static_cast<size_t>(Kpa * kPanel));
        std::vector<float> tile(static_cast<size_t>(kn.rows * kPanel));
        if (kn.begin) kn.begin();
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < panels; ++p) {
            const int64_t n0 = p * kPanel;
            const int cols = static_cast<int>(std::min<int64_t>(kPanel, N - n0));
            // Pack: wp[kp][c] = pair (2kp, 2kp + 1) of column n0 + c; missing columns and
            // pairs are zero.
            if (ldv > 0) {  // rows 2kp and 2kp + 1 of v, interleaved
                for (int64_t kp = 0; kp < Kpa; ++kp) {
                    uint32_t* dst = wp.data() + kp * kPanel;
                    const int64_t k = 2 * kp;
                    if (k >= K) {
                        std::fill(dst, dst + kPanel, 0u);
                        continue;
                    }
                    const uint16_t* r0 = w + k * ldv + n0;
                    const uint16_t* r1 = k + 1 < K ? w + (k + 1) * ldv + n0 : nullptr;
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
                    if (kn.vector_pack && r1 && cols == kPanel) {
                        interleave32_avx512(dst, r0, r1);
                        continue;
                    }
#endif
                    for (int c = 0; c < cols; ++c) dst[c] = pair_bits(r0[c], r1 ? r1[c] : 0);
                    std::fill(dst + cols, dst + kPanel, 0u);
                }
            }
            // A weight's full panel, K a multiple of 32: its 32 rows' pair words transposed in
            // 16 x 16 blocks (attention's keys: the scalar loop cost as much as the products).
            const bool transposed = ldv == 0 && kn.vector_pack && cols == kPanel && K % 32 == 0;
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
            if (transposed) {
                const auto* w32 = reinterpret_cast<const float*>(w + n0 * K);
                auto* d32 = reinterpret_cast<float*>(wp.data());
                for (int64_t kp = 0; kp < Kp; kp += 16) {
                    transpose16(w32 + kp, d32 + kp * kPanel, kPanel, K / 2);
                    transpose16(w32 + 16 * (K / 2) + kp, d32 + kp * kPanel + 16, kPanel, K / 2);
                }
                std::fill(wp.begin() + Kp * kPanel, wp.begin() + Kpa * kPanel, 0u);
            }
#endif
            for (int c = 0; c < kPanel && ldv == 0 && !transposed; ++c) {
                if (c >= cols) {
                    for (int64_t kp = 0; kp < Kpa; ++kp) wp[kp * kPanel + c] = 0;
                    continue;
                }
                const uint16_t* wr = w + (n0 + c) * K;
                for (int64_t kp = 0; kp < Kp; ++kp) {
                    const int64_t k = 2 * kp;
                    wp[kp * kPanel + c] = pair_bits(wr[k], k + 1 < K ? wr[k + 1] : 0);
                }
                for (int64_t kp = Kp; kp < Kpa; ++kp) wp[kp * kPanel + c] = 0;
            }
            for (int64_t t0 = 0; t0 < T; t0 += kn.rows) {
                const int rows = static_cast<int>(std::min<int64_t>(kn.rows, T - t0));
                if (cols == kPanel) {
                    kn.micro(out + t0 * N + n0, N, xp + t0 * Kpa, Kpa, wp.data(), Kpa, rows, cols);
                } else {  // the last panel: through a tile, so no column past N is written
                    kn.micro(tile.data(), kPanel, xp + t0 * Kpa, Kpa, wp.data(), Kpa, rows, cols);
                    for (int r = 0; r < rows; ++r) {
                        std::memcpy(out + (t0 + r) * N + n0, tile.data() + r * kPanel,
                                    sizeof(float) * static_cast<size_t>(cols));
                    }
                }
            }
        }
        if (kn.end) kn.end();
    }
}

// AMX with the weights in place (K a multiple of 32): no per-call packing of w, which cost
// about half as much as the tile arithmetic itself in a prefill (perf, 2026-11-30). x is
// packed once per call as pairs, pair row kp holding every token ([K/2][Tp], Tp = T padded to
// 32 with zeros); the last partial block of 32 weight rows is copied, zero-padded, once.
// Threads take blocks of 32 weight rows and run every 32-token block against them.
void gemm_wa(float* out, const float* x, const uint16_t* w, int64_t T, int64_t N, int64_t K,
             MicroKernelWA micro, void (*begin)(), void (*end)(), bool vector_pack) {
    const int64_t Kp = K / 2, Tp = (T + kAmxRows - 1) / kAmxRows * kAmxRows;
    static thread_local std::vector<uint32_t> xv_buf;
    xv_buf.resize(static_cast<size_t>(Kp * Tp));
    uint32_t* const xv = xv_buf.data();
    int64_t t_done = 0;  // tokens packed by the vector packer (whole blocks of 16)
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
    if (vector_pack) {
        t_done = T / 16 * 16;
#pragma omp parallel for schedule(static) if (T * K > kParallelMinWork)
        for (int64_t t0 = 0; t0 < t_done; t0 += 16)
            pack_tokens16_avx512(xv + t0, Tp, x + t0 * K, K);
    }
#endif
#pragma omp parallel for schedule(static) if (T * K > kParallelMinWork)
    for (int64_t kp = 0; kp < Kp; ++kp) {
        uint32_t* dst = xv + kp * Tp;
        for (int64_t t = t_done; t < T; ++t) {
            const float* xr = x + t * K + 2 * kp;
            dst[t] = pair_bits(f32_to_bf16(xr[0]), f32_to_bf16(xr[1]));
        }
        std::fill(dst + T, dst + Tp, 0u);
    }
    const int64_t blocks = (N + kAmxRows - 1) / kAmxRows, full = N / kAmxRows;
    std::vector<uint16_t> tail;
    if (full < blocks) {  // the last weight rows, zero-padded to a whole block
        tail.assign(static_cast<size_t>(kAmxRows * K), 0);
        std::memcpy(tail.data(), w + full * kAmxRows * K,
                    sizeof(uint16_t) * static_cast<size_t>((N - full * kAmxRows) * K));
    }
#pragma omp parallel if (T * N * K > kParallelMinWork)
    {
        if (begin) begin();
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t n0 = b * kAmxRows;
            const int rows_n = static_cast<int>(std::min<int64_t>(kAmxRows, N - n0));
            const uint16_t* wb = b < full ? w + n0 * K : tail.data();
            for (int64_t t0 = 0; t0 < T; t0 += kAmxRows) {
                const int rows_t = static_cast<int>(std::min<int64_t>(kAmxRows, T - t0));
                micro(out + t0 * N + n0, N, wb, K, xv + t0, Tp, rows_n, rows_t);
            }
        }
        if (end) end();
    }
}

constexpr Kernel kDotEmulated{micro_emulated, kRows, 1, false, nullptr, nullptr, false};
constexpr Kernel kAmxEmulated{
    micro_amx_emulated, kAmxRows, kAmxPairs, true, nullptr, nullptr, false};
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
constexpr Kernel kDotNative{micro_avx512, kRows, 1, false, nullptr, nullptr, true};
constexpr Kernel kAmxNative{micro_amx, kAmxRows, kAmxPairs, true, amx_begin, amx_end, true};
#endif

// FOT_CPU_BF16_DOT=0 / FOT_CPU_AMX=0: opt out (comparisons, bug hunts).
bool opted_out(const char* var) {
    const char* e = std::getenv(var);
    return e && std::strcmp(e, "0") == 0;
}

bool detect_bf16_dot() {
    if (opted_out("FOT_CPU_BF16_DOT")) return false;
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx512bw");
#else
    return false;
#endif
}

bool amx_in_cpuid() {
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
    __builtin_cpu_init();
    return __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16");
#else
    return false;
#endif
}

bool detect_amx() {
    if (opted_out("FOT_CPU_AMX")) return false;
#if defined(FOT_HAVE_BF16_DOT_KERNEL) && defined(SYS_arch_prctl)
    if (!amx_in_cpuid()) return false;
    // Linux hands out the tile state (8 KiB per thread) only on request, once per process.
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
}

}  // namespace

void matmul_bf16_xv(float* out, const float* x, const uint16_t* v, int64_t ldv, int64_t T,
                    int64_t N, int64_t K, Bf16DotKernel kernel) {
    if (T <= 0 || N <= 0) return;
    FOT_CHECK(ldv >= N, "matmul_bf16_xv: row stride ", ldv, " below ", N, " columns");
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
    if (kernel == Bf16DotKernel::kAmx && bf16_amx_available()) {
        return gemm(out, x, v, T, N, K, kAmxNative, ldv);
    }
    if (kernel == Bf16DotKernel::kNative && bf16_dot_available()) {
        return gemm(out, x, v, T, N, K, kDotNative, ldv);
    }
#endif
    const bool dot = kernel == Bf16DotKernel::kNative || kernel == Bf16DotKernel::kEmulated;
    gemm(out, x, v, T, N, K, dot ? kDotEmulated : kAmxEmulated, ldv);
}

bool bf16_dot_available() {
    static const bool yes = detect_bf16_dot();
    return yes;
}

bool bf16_amx_available() {
    static const bool yes = detect_amx();
    return yes;
}

bool cpu_has_amx_bf16() {
    static const bool yes = amx_in_cpuid();
    return yes;
}

Bf16DotKernel fast_bf16_dot_kernel() {
    // AMX first: on a Xeon with both (2026-11-30) tdpbf16ps ran 3.5 TFLOP/s per core, vdpbf16ps
    // 0.11, half of fp32 FMA, so there the dot-product kernel was slower than SGEMM. A CPU with
    // AMX whose OS refuses the tile state (or FOT_CPU_AMX=0) therefore takes SGEMM, not
    // vdpbf16ps; the dot-product kernel is for CPUs without AMX (Cooper Lake, AMD Zen 4/5:
    // on a Zen 4 EPYC, 2026-12-02, it ran at one zmm vdpbf16ps per cycle, twice fp32 FMA).
    if (bf16_amx_available()) return Bf16DotKernel::kAmx;
    if (bf16_dot_available() && !cpu_has_amx_bf16()) return Bf16DotKernel::kNative;
    return Bf16DotKernel::kEmulated;
}

void matmul_bf16_dot(float* out, const float* x, const uint16_t* w, int64_t T, int64_t N, int64_t K,
                     Bf16DotKernel kernel) {
    if (T <= 0 || N <= 0) return;
    switch (kernel) {
        case Bf16DotKernel::kNative:
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
            if (bf16_dot_available()) return gemm(out, x, w, T, N, K, kDotNative);
#endif
            return gemm(out, x, w, T, N, K, kDotEmulated);
        case Bf16DotKernel::kEmulated:
            return gemm(out, x, w, T, N, K, kDotEmulated);
        case Bf16DotKernel::kAmx:
#if defined(FOT_HAVE_BF16_DOT_KERNEL)
            if (bf16_amx_available()) {
                if (K % (2 * kAmxPairs) == 0) {
                    return gemm_wa(out, x, w, T, N, K, micro_amx_wa, amx_begin, amx_end, true);
                }
                return gemm(out, x, w, T, N, K, kAmxNative);
            }
#endif
            [[fallthrough]];
        case Bf16DotKernel::kAmxEmulated:
            if (K % (2 * kAmxPairs) == 0) {
                return gemm_wa(out, x, w, T, N, K, micro_amx_wa_emulated, nullptr, nullptr, false);
            }
            return gemm(out, x, w, T, N, K, kAmxEmulated);
    }
}

}  // namespace fot::kernels::cpu
