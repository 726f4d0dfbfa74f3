// Exact top-k memory retrieval on the GPU (docs/architecture.md §6.3), same contracts as
// kernels/cpu/topk.cpp. Candidate order: higher score first, then lower global position.
//  - memory_topk, score-rows path: a tiled fp32 kernel (tile.cuh; for prefill over bf16 keys
//    the tensor-core scorer below; for <= 8 queries a lane-per-key kernel over warp-staged rows
//    that reads each key once) writes the scores of a group of (head, query) rows into scratch
//    [rows, S]; then one block per row finds the K-th best
//    candidate by an MSB-first radix select over the 96-bit key (order-preserving score bits, then
//    the position), gathers the candidates at or before it and bitonic-sorts them (in shared memory
//    up to kSharedTopK slots, in the caller's scratch beyond).
//  - memory_topk, filtered path (prefill): the same tiled scores of every 8th key tile are
//    selected first; their K-th best bounds each row's K-th best, so the other keys are scored
//    and kept only when better (see "filtered path" below).
//  - topk_threshold: the same radix select over the R x K gathered candidates of each row.
//  - attn_accumulate_selected: one block per row; candidates are folded in slot order, as the
//    CPU does.
// Scores equal the CPU's up to fp32 rounding (the order of the dot-product sum; prefill over
// bf16 keys sums on the tensor cores, see "tensor-core scores"), so near-ties may select
// differently; exact ties (identical keys) are broken by position exactly as on the CPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/key_dots.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/tile.cuh"

namespace fot::kernels::cuda {
namespace {

using tile::kLdK;
using tile::kLdQ;
using tile::kTileK;
using tile::kTileQ;
using tile::kTileThreads;

constexpr int kScoreDP = 128;            // shared-memory layout of the scoring tiles
constexpr int kScoreTilesPerBlock = 16;  // 512 keys per scoring block
constexpr int kSelectThreads = 256;
constexpr int kSelectThreadsFew = 1024;  // rows of at most kFewSelectRows per launch
constexpr int64_t kFewSelectRows = 128;
constexpr int kSmallThreads = 128;
constexpr uint32_t kWorstScoreKey = 0xffffffffu;
constexpr uint64_t kWorstPosKey = ~uint64_t{0};

// Ascending key = descending score; -0 and +0 compare equal, as floats do.
__device__ __forceinline__ uint32_t score_key(float s) {
    uint32_t u = s == 0.f ? 0u : __float_as_uint(s);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}
__device__ __forceinline__ float score_from_key(uint32_t k) {
    uint32_t u = ~k;
    u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
    return __uint_as_float(u);
}
__device__ __forceinline__ bool key_less(uint32_t sa, uint64_t pa, uint32_t sb, uint64_t pb) {
    return sa < sb || (sa == sb && pa < pb);
}

constexpr int kRadixLoads = 4;  // items a thread loads before it counts them

struct RadixSmem {
    unsigned int hist[256];
    uint32_t sprefix, smask;
    uint64_t pprefix, pmask;
    int64_t krem;
    int state;  // 0 running, 1 unique prefix found, 2 fewer than k valid items
    uint32_t found_s;
    uint64_t found_p;
};

// The k-th (1-based) smallest key (score_key, position key) over the valid items i in [0, n).
// valid_score(i, &sk) -> bool gives the score key of item i (false: not a candidate);
// pos(i) its position key, read only when the score digits do not decide. Returns false when
// fewer than k items are valid. Block-wide: every thread calls it, every thread gets the key.
template <typename ScoreF, typename PosF>
__device__ bool block_radix_kth(int64_t n, int64_t k, ScoreF valid_score, PosF pos, RadixSmem& sm,
                                uint32_t* out_s, uint64_t* out_p) {
    if (threadIdx.x == 0) {
        sm.sprefix = sm.smask = 0;
        sm.pprefix = sm.pmask = 0;
        sm.krem = k;
        sm.state = 0;
    }
    for (int pass = 0; pass < 12; ++pass) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) sm.hist[b] = 0;
        __syncthreads();
        const uint32_t sp = sm.sprefix, smask = sm.smask;
        const uint64_t pp = sm.pprefix, pmask = sm.pmask;
        const bool score_pass = pass < 4;
        const int shift = score_pass ? 24 - 8 * pass : 56 - 8 * (pass - 4);
        // Warp-aggregated histogram: scores share few top digits, so one atomic per distinct
        // digit per warp instead of one per item. Each thread loads kRadixLoads items' score
        // keys before it counts them (a scan of 130k scores was one dependent L2 round trip
        // per item and thread). The loop bound is uniform over the block.
        const int lane = threadIdx.x & 31;
        const int64_t step = static_cast<int64_t>(blockDim.x);
        for (int64_t i0 = 0; i0 < n; i0 += step * kRadixLoads) {
            uint32_t sks[kRadixLoads] = {};
            bool match[kRadixLoads];
#pragma unroll
            for (int u = 0; u < kRadixLoads; ++u) {
                const int64_t i = i0 + u * step + threadIdx.x;
                match[u] = i < n && valid_score(i, &sks[u]) && (sks[u] & smask) == sp;
            }
#pragma unroll
            for (int u = 0; u < kRadixLoads; ++u) {
                bool take = false;
                unsigned digit = 0;
                if (match[u]) {
                    if (score_pass) {
                        take = true;
                        digit = (sks[u] >> shift) & 255u;
                    } else {
                        const uint64_t pk = pos(i0 + u * step + threadIdx.x);
                        take = (pk & pmask) == pp;
                        digit = static_cast<unsigned>((pk >> shift) & 255u);
                    }
                }
                const unsigned active = __ballot_sync(0xffffffffu, take);
                if (take) {
                    const unsigned peers = __match_any_sync(active, digit);
                    if (lane == __ffs(peers) - 1)
                        atomicAdd(&sm.hist[digit], static_cast<unsigned>(__popc(peers)));
                }
            }
        }
        __syncthreads();
        // The bin that holds the krem-th item: warp 0 scans the 256 counts, 8 per lane, with a
        // warp prefix sum (one lane walking all 256 took ~1 us per pass with the block idle).
        // Same bin and count as a serial walk: the sums are integers.
        if (threadIdx.x < 32) {
            unsigned v[8], sum = 0;
#pragma unroll
            for (int b = 0; b < 8; ++b) {
                v[b] = sm.hist[lane * 8 + b];
                sum += v[b];
            }
            unsigned incl = sum;  // counts of bins [0, lane * 8 + 8)
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const unsigned t = __shfl_sync(0xffffffffu, incl, lane - o);
                if (lane >= o) incl += t;
            }
            const int64_t total = __shfl_sync(0xffffffffu, incl, 31);
            const int64_t krem = sm.krem;
            if (pass == 0 && total < k) {
                if (lane == 0) sm.state = 2;
            } else {
                // The first lane whose bins reach krem (none: the last, as the walk ends on 255).
                const unsigned reach =
                    __ballot_sync(0xffffffffu, static_cast<int64_t>(incl) >= krem);
                const int owner = reach ? __ffs(reach) - 1 : 31;
                if (lane == owner) {
                    int64_t cum = static_cast<int64_t>(incl) - sum;
                    int chosen = 255;
                    for (int b = 0; b < 8; ++b) {
                        if (cum + v[b] >= krem) {
                            chosen = lane * 8 + b;
                            break;
                        }
                        cum += v[b];
                    }
                    sm.krem = krem - cum;
                    if (score_pass) {
                        sm.sprefix |= static_cast<uint32_t>(chosen) << shift;
                        sm.smask |= 255u << shift;
                    } else {
                        sm.pprefix |= static_cast<uint64_t>(chosen) << shift;
                        sm.pmask |= uint64_t{255} << shift;
                    }
                    if (sm.hist[chosen] == 1) sm.state = 1;
                }
            }
        }
        __syncthreads();
        if (sm.state != 0) break;
    }
    const int state = sm.state;
    if (state == 2) return false;
    if (state == 1) {
        // Exactly one item has the prefix: find its full key.
        const uint32_t sp = sm.sprefix, smask = sm.smask;
        const uint64_t pp = sm.pprefix, pmask = sm.pmask;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            uint32_t sk;
            if (!valid_score(i, &sk) || (sk & smask) != sp) continue;
            const uint64_t pk = pos(i);
            if ((pk & pmask) != pp) continue;
            sm.found_s = sk;
            sm.found_p = pk;
        }
        __syncthreads();
        *out_s = sm.found_s;
        *out_p = sm.found_p;
    } else {
        *out_s = sm.sprefix;
        *out_p = sm.pprefix;
    }
    __syncthreads();  // sm may be reused by the caller
    return true;
}

// Sorts n (a power of two) keys ascending in shared memory, carrying `slot`.
__device__ void bitonic_sort(uint32_t* sk, uint64_t* pk, int* slot, int n) {
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size / 2; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                const int j = i ^ stride;
                if (j <= i) continue;
                const bool asc = (i & size) == 0;
                const bool j_first = key_less(sk[j], pk[j], sk[i], pk[i]);
                if (j_first == asc) {
                    const uint32_t ts = sk[i];
                    sk[i] = sk[j];
                    sk[j] = ts;
                    const uint64_t tp = pk[i];
                    pk[i] = pk[j];
                    pk[j] = tp;
                    const int tt = slot[i];
                    slot[i] = slot[j];
                    slot[j] = tt;
                }
            }
            __syncthreads();
        }
    }
}

// ---- memory_topk -----------------------------------------------------------------------------
// Scores of rows (head h0 + z, queries t0 + ...) against key tiles of kTileK keys: block x takes
// logical tiles [x * kScoreTilesPerBlock, ...) of n_tiles, which Epi maps to key tiles
// (Epi::key_tile) and whose scores (q.k * scale) it consumes (Epi::put). Every epilogue sees
// the same scores bit for bit: each is one fmaf chain over d in order, then the scale.
//  - RowsOut: every key, into out [hc, Tc, S] (the score-rows path).
//  - SampleOut / FilterAppend: the filtered path's sampled tiles and the others (below).
template <typename E, typename Epi>
__global__ void __launch_bounds__(kTileThreads)
    score_kernel(Epi epi, const float* __restrict__ q, int64_t q_stride, const E* __restrict__ k,
                 int64_t k_head_stride, int64_t h0, int64_t t0, int64_t Tc, int64_t T, int64_t S,
                 int64_t n_tiles, int D, float scale) {
    extern __shared__ float4 smem4[];
    float* Qs = reinterpret_cast<float*>(smem4);  // [kScoreDP][kLdQ]
    float* Ks = Qs + kScoreDP * kLdQ;             // [kScoreDP][kLdK]
    const int64_t hh = blockIdx.z, h = h0 + hh;
    const int64_t tq0 = static_cast<int64_t>(blockIdx.y) * kTileQ;  // within the chunk
    const int64_t u0 = static_cast<int64_t>(blockIdx.x) * kScoreTilesPerBlock;
    const int64_t u1 = min64(n_tiles, u0 + kScoreTilesPerBlock);
    const int tid = threadIdx.x, tq = tid / 8, tk = tid % 8;
    // Rows of the chunk beyond Tc load as zero queries and are not written.
    const int64_t t_end = min64(T, t0 + Tc);
    tile::load_query_tile(Qs, q, q_stride, h, t0 + tq0, t_end, D);
    epi.begin(hh, h, tq0 + tq * 4, 1);
    const E* kh = k + h * k_head_stride;
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t j0 = epi.key_tile(u) * kTileK;
        const int nk = static_cast<int>(min64(kTileK, S - j0));
        __syncthreads();
        tile::load_rows<E, true>(Ks, kLdK, kh + j0 * D, nk, D);
        __syncthreads();
        float s[4][4];
        tile::qk_microtile(Qs, Ks, D, tq, tk, s);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int64_t tr = tq0 + tq * 4 + i;  // row within the chunk
            if (tr >= Tc || t0 + tr >= T) continue;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                if (tk * 4 + c < nk) epi.put(hh, tr, i, u, j0, tk * 4 + c, s[i][c] * scale);
            }
        }
    }
}

struct RowsOut {
    float* out;  // [hc, Tc, S]
    int64_t Tc, S;
    __device__ void begin(int64_t, int64_t, int64_t, int) {}
    __device__ int64_t key_tile(int64_t u) const { return u; }
    __device__ void put(int64_t hh, int64_t tr, int, int64_t, int64_t j0, int c, float s) {
        out[(hh * Tc + tr) * S + j0 + c] = s;
    }
};

// One score_kernel launch over the n_tiles logical tiles of nh heads x nt queries.
template <typename E, typename Epi>
void launch_scores(const Epi& epi, int64_t n_tiles, const float* q, int64_t q_stride, const E* k,
                   int64_t k_head_stride, int64_t h0, int64_t t0, int64_t nt, int64_t nh, int64_t T,
                   int64_t S, int64_t D, float scale, cudaStream_t st) {
    if (n_tiles <= 0) return;
    const size_t smem = sizeof(float) * (kScoreDP * kLdQ + kScoreDP * kLdK);
    FOT_CUDA_CHECK(cudaFuncSetAttribute(
        score_kernel<E, Epi>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const dim3 grid(
        static_cast<unsigned>((n_tiles + kScoreTilesPerBlock - 1) / kScoreTilesPerBlock),
        static_cast<unsigned>((nt + kTileQ - 1) / kTileQ), static_cast<unsigned>(nh));
    score_kernel<E, Epi><<<grid, kTileThreads, smem, st>>>(
        epi, q, q_stride, k, k_head_stride, h0, t0, nt, T, S, n_tiles, static_cast<int>(D), scale);
    FOT_CUDA_CHECK(cudaGetLastError());
}

// Scores for few queries (decode: nt <= kDecodeRows): each warp copies its 32 consecutive key
// rows to shared memory with coalesced loads (key_dots.cuh), then lane = key dots its row with
// the chunk's queries (in shared memory), so the keys are read once instead of through 64-query
// tiles that are mostly padding. The dot product runs over d in order with fmaf, as
// score_kernel's does: the same scores bit for bit. (Reading the rows straight from global
// memory, one lane per row, made every load touch 32 rows: L1-bound at ~2 TB/s.)
constexpr int kDecodeRows = 8;
constexpr int kDecodeScoreThreads = 128;
constexpr int kDecodeScoreWarps = kDecodeScoreThreads / 32;

// Dynamic shared memory of score_decode_kernel: one staged tile of 32 rows per warp.
size_t score_decode_smem(int64_t D, int64_t esz) {
    const int pieces = static_cast<int>(D * esz / 8);
    return sizeof(uint2) * static_cast<size_t>(kDecodeScoreWarps * 32 * stage_ld(pieces));
}

// kRows: the query rows the registers and loops are sized for (rows <= kRows): 1 for decode
// proper. With 8 for one row, ncu on an H200 (session 9) counted 14 of 32 threads not
// predicated off per issued instruction: the unrolled loops of the 7 absent rows were issued
// anyway, and L1 (one shared-memory load of q per multiply-add) was 73% busy.
template <typename E, int kRows>
__global__ void __launch_bounds__(kDecodeScoreThreads)
    score_decode_kernel(float* out, const float* __restrict__ q, int64_t q_stride,
                        const E* __restrict__ k, int64_t k_head_stride, int64_t h0, int64_t t0,
                        int64_t Tc, int64_t nt, int64_t S, int D, float scale) {
    pdl_start();
    constexpr int kN = 8 / sizeof(E);
    __shared__ float4 qs4[kRows][kMaxHeadDim / 4];  // float4: 16-byte aligned rows
    float(*qs)[kMaxHeadDim] = reinterpret_cast<float(*)[kMaxHeadDim]>(qs4);
    extern __shared__ uint2 stage_smem[];
    const int64_t hh = blockIdx.y, h = h0 + hh;
    const int rows = static_cast<int>(nt);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t jw = static_cast<int64_t>(blockIdx.x) * kDecodeScoreThreads + warp * 32;
    const int pieces = D / kN, ld = stage_ld(pieces);
    const int nk = static_cast<int>(min64(32, max64(0, S - jw)));
    uint2* tile = stage_smem + warp * 32 * ld;
    // The warp's key rows are in flight while the queries are loaded (one round trip less).
    if (nk > 0) {
        warp_stage_rows_issue(tile, reinterpret_cast<const uint2*>(k + h * k_head_stride + jw * D),
                              pieces, nk);
    }
    for (int i = threadIdx.x; i < rows * D; i += kDecodeScoreThreads) {
        const int r = i / D, d = i - r * D;
        qs[r][d] = q[(t0 + r) * q_stride + h * D + d];
    }
    __syncthreads();
    if (nk == 0) return;  // warp-uniform; no block barrier follows
    mma::cp_async_wait<0>();
    __syncwarp();
    if (lane >= nk) return;
    const uint2* row = tile + lane * ld;
    float dot[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) dot[r] = 0.f;
#pragma unroll 4
    for (int c = 0; c < pieces; ++c) {
        const uint2 raw = row[c];
        const E* e = reinterpret_cast<const E*>(&raw);
        float kv[kN];
#pragma unroll
        for (int u = 0; u < kN; ++u) kv[u] = to_f32(e[u]);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            if (r < rows) {
                // The piece's kN query values in one shared-memory load (16 or 8 bytes, aligned:
                // c * kN floats into a row of kMaxHeadDim), summed in d order as before.
                float qv[kN];
                if constexpr (kN == 4) {
                    const float4 f = *reinterpret_cast<const float4*>(&qs[r][c * kN]);
                    qv[0] = f.x;
                    qv[1] = f.y;
                    qv[2] = f.z;
                    qv[3] = f.w;
                } else {
                    static_assert(kN == 2, "8-byte pieces of 2- or 4-byte elements");
                    const float2 f = *reinterpret_cast<const float2*>(&qs[r][c * kN]);
                    qv[0] = f.x;
                    qv[1] = f.y;
                }
#pragma unroll
                for (int u = 0; u < kN; ++u) dot[r] = fmaf(qv[u], kv[u], dot[r]);
            }
        }
    }
    const int64_t j = jw + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        if (r < rows) out[(hh * Tc + r) * S + j] = dot[r] * scale;
    }
}

// Floats of candidate storage per sorted slot: pkey, row (8 bytes each), skey, slot, score.
constexpr int64_t kCandFloats = 7;

// Items a select_kernel row chooses from; for_row(r, n, o) is the source of chunk row r (hh * Tc +
// tr) with n items per row, whose outputs are row o (h * T + t) of [H, T, K]; size(n) its item
// count. ScoreRows: the S scores of one (head, query) row in key order (item i is store row i).
// Candidates: a row's chunk or slice candidates (score, store row; row -1 = empty slot).
// Row i of the scores -> store row: the identity, or (the filtered path's sample) a map.
struct EveryKey {
    __device__ int64_t operator()(int64_t i) const { return i; }
};
template <typename KeyOf>
struct ScoreRowsOf {
    const float* score;  // [rows][n]
    const int64_t* row_pos;
    __device__ ScoreRowsOf for_row(int64_t r, int64_t n, int64_t) const {
        return {score + r * n, row_pos};
    }
    __device__ int64_t size(int64_t n) const { return n; }
    __device__ bool get(int64_t i, float* s, int64_t* row) const {
        *s = score[i];
        *row = KeyOf{}(i);
        return true;
    }
    __device__ uint64_t pos(int64_t i) const { return static_cast<uint64_t>(row_pos[KeyOf{}(i)]); }
};
using ScoreRows = ScoreRowsOf<EveryKey>;
struct Candidates {
    const float* score;  // [rows][n]
    const int32_t* row;  // [rows][n]
    const int64_t* row_pos;
    __device__ Candidates row_at(int64_t offset) const {
        return {score + offset, row + offset, row_pos};
    }
    __device__ Candidates for_row(int64_t r, int64_t n, int64_t) const { return row_at(r * n); }
    __device__ int64_t size(int64_t n) const { return n; }
    __device__ bool get(int64_t i, float* s, int64_t* r) const {
        const int32_t x = row[i];
        if (x < 0) return false;
        *s = score[i];
        *r = x;
        return true;
    }
    __device__ uint64_t pos(int64_t i) const { return static_cast<uint64_t>(row_pos[row[i]]); }
};

// The K best of one row's items, sorted, into outputs [base, base + K): block-wide. Candidates
// sort in `cand` (dynamic shared memory, or the row's slice of global scratch for large K).
// Items are only read before the first output is written, so a source may read the outputs.
template <typename Src>
__device__ void select_row(float* scores_out, int64_t* rows_out, int64_t* pos_out, const Src& src,
                           int64_t n_items, int64_t base, int64_t K, int Kp, float* cand) {
    // Sorted keys (csk, cpk, cslot) and, by slot, the candidate's score and store row.
    uint64_t* cpk = reinterpret_cast<uint64_t*>(cand);       // [Kp]
    int64_t* crow = reinterpret_cast<int64_t*>(cpk + Kp);    // [Kp]
    uint32_t* csk = reinterpret_cast<uint32_t*>(crow + Kp);  // [Kp]
    int* cslot = reinterpret_cast<int*>(csk + Kp);           // [Kp]
    float* cscore = reinterpret_cast<float*>(cslot + Kp);    // [Kp]
    __shared__ RadixSmem sm;
    __shared__ int count;
    auto score_of = [&](int64_t i, uint32_t* sk) {
        float s;
        int64_t r;
        if (!src.get(i, &s, &r)) return false;
        *sk = score_key(s);
        return true;
    };
    auto pos_of = [&](int64_t i) { return src.pos(i); };

    uint32_t ts = kWorstScoreKey;
    uint64_t tp = kWorstPosKey;
    // Fewer than K valid items: block_radix_kth says so and every valid item is taken.
    const bool all = n_items <= K;
    if (!all && !block_radix_kth(n_items, K, score_of, pos_of, sm, &ts, &tp)) {
        ts = kWorstScoreKey;
        tp = kWorstPosKey;
    }
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n_items; i += blockDim.x) {
        float s;
        int64_t r;
        if (!src.get(i, &s, &r)) continue;
        const uint32_t sk = score_key(s);
        if (sk > ts) continue;
        const uint64_t pk = pos_of(i);
        if (sk == ts && pk > tp) continue;
        const int c = atomicAdd(&count, 1);
        if (c < K) {
            csk[c] = sk;
            cpk[c] = pk;
            cslot[c] = c;
            cscore[c] = s;
            crow[c] = r;
        }
    }
    __syncthreads();
    // Sort only the real candidates, padded to a power of two (<= Kp, the storage).
    const int n = static_cast<int>(min64(count, K));
    int ns = 1;
    while (ns < n) ns <<= 1;
    for (int i = n + threadIdx.x; i < ns; i += blockDim.x) {
        csk[i] = kWorstScoreKey;
        cpk[i] = kWorstPosKey;
        cslot[i] = -1;
    }
    __syncthreads();
    bitonic_sort(csk, cpk, cslot, ns);
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
        const int sl = i < n ? cslot[i] : -1;
        scores_out[base + i] = sl >= 0 ? cscore[sl] : kNegInf;
        pos_out[base + i] = sl >= 0 ? static_cast<int64_t>(cpk[i]) : -1;
        rows_out[base + i] = sl >= 0 ? crow[sl] : -1;
    }
}

// One block per row (hh, tr) of the chunk: the K best of its items (select_row). Candidates sort
// in dynamic shared memory, or (gcand != null, large K) in the row's slice of gcand. kThreads:
// 256, or 1024 when there are few rows (decode: one per head), so each row is scanned by more
// threads.
template <int kThreads, typename Src>
__global__ void __launch_bounds__(kThreads)
    select_kernel(float* scores_out, int64_t* rows_out, int64_t* pos_out, Src items, int64_t h0,
                  int64_t t0, int64_t Tc, int64_t T, int64_t n_items, int64_t K, int Kp,
                  float* gcand) {
    pdl_start();
    extern __shared__ float4 smem4[];
    float* cand =
        gcand ? gcand + (static_cast<int64_t>(blockIdx.y) * Tc + blockIdx.x) * kCandFloats * Kp
              : reinterpret_cast<float*>(smem4);
    const int64_t hh = blockIdx.y, tr = blockIdx.x;
    const int64_t o = (h0 + hh) * T + t0 + tr;
    const Src src = items.for_row(hh * Tc + tr, n_items, o);
    select_row(scores_out, rows_out, pos_out, src, src.size(n_items), o * K, K, Kp, cand);
}

// ---- sliced select (few rows, many scores) -----------------------------------------------------
// In decode a pass has one row per head (32 rows), and one block per row walked 130k scores
// 5-6 times at 128k memory: 32 blocks busy on 132 SMs. In prefill the scratch (128 MiB in
// CudaBackend) holds 256 rows of 130k scores, 2 blocks of 256 threads per SM. So passes of
// fewer than kSliceMaxRows rows (about what fills an H200 with one-block selects: 8 blocks
// per SM x 132) run with grid (rows, slices) instead: each block
// takes one slice of a row's scores (at most kSliceItems), finds the slice's K-th best key and
// writes the slice's K best (unsorted; empty slots row -1) as Candidates [row][slice * K]. The
// K best of a row are among the union of its slices' K best, so select_kernel<Candidates> over
// slices x K items then gives exactly the one-block select's result, bit for bit.
constexpr int64_t kSliceItems = 8192;
constexpr int64_t kMaxSlices = 64;
constexpr int64_t kSliceMaxRows = 1024;
constexpr int kSliceThreads = 512;

__global__ void __launch_bounds__(kSliceThreads)
    slice_select_kernel(float* cand_s, int32_t* cand_r, const float* __restrict__ score_rows,
                        const int64_t* __restrict__ row_pos, int64_t Tc, int64_t S, int64_t L,
                        int64_t K) {
    pdl_start();
    __shared__ RadixSmem sm;
    __shared__ int count;
    const int64_t row = static_cast<int64_t>(blockIdx.y) * Tc + blockIdx.x;
    const int64_t i0 = static_cast<int64_t>(blockIdx.z) * L, n = min64(L, S - i0);
    const float* sc = score_rows + row * S + i0;
    const int64_t out0 = (row * gridDim.z + blockIdx.z) * K;
    auto score_of = [&](int64_t i, uint32_t* sk) {
        *sk = score_key(sc[i]);
        return true;
    };
    auto pos_of = [&](int64_t i) { return static_cast<uint64_t>(row_pos[i0 + i]); };
    uint32_t ts = kWorstScoreKey;
    uint64_t tp = kWorstPosKey;
    if (n > K && !block_radix_kth(n, K, score_of, pos_of, sm, &ts, &tp)) {
        ts = kWorstScoreKey;  // unreachable: every score is valid and n > K
        tp = kWorstPosKey;
    }
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += kSliceThreads) {
        const float s = sc[i];
        const uint32_t sk = score_key(s);
        if (sk > ts) continue;
        if (sk == ts && pos_of(i) > tp) continue;
        const int c = atomicAdd(&count, 1);
        if (c < K) {
            cand_s[out0 + c] = s;
            cand_r[out0 + c] = static_cast<int32_t>(i0 + i);
        }
    }
    __syncthreads();
    for (int64_t c = min64(count, K) + threadIdx.x; c < K; c += kSliceThreads)
        cand_r[out0 + c] = -1;
}

// ---- filtered path (prefill) -------------------------------------------------------------------
// The score-rows path writes S scores per (head, query) row and its select reads them 5-6 times:
// at 128k tokens (3B shape, k 128) that was 37 of the 40 s of a top-k prefill on an H200. The
// filtered path writes an eighth of them:
//  1. Sample: key tiles g with g % kSampleEvery == 0 (every 8th tile of kTileK keys) are scored
//     into scratch [rows, n_s] and select_kernel<SampledRows> writes each row's K best of the
//     sample to the outputs. The K-th of them bounds the row's final K-th best from below:
//     a key that is not better than it has K better keys in the sample alone.
//  2. Filter: the other tiles are scored and only keys better than the bound are appended
//     to the row's candidate list (an atomic count per row, at most cap entries kept).
//  3. Select: select_kernel<Filtered> picks the K best of the sample's K and the row's
//     appended keys.
// A list that overflows (count > cap: adversarial data, e.g. scores rising with the key index)
// raises a flag in scratch; memory_topk reads it once the call's passes are queued (waiting for
// the stream: one round trip per call) and then redoes the whole call through score rows.
// The scores are the same tile scorer's in every step and the selection is exact, so the
// outputs equal the score-rows path's bit for bit. For iid scores a row appends about
// K x (S - n_s) / n_s = 7K keys; cap is 32K.
constexpr int64_t kSampleEvery = 8;
constexpr int64_t kFilterCapPerK = 32;

// Sample item i -> store row.
__host__ __device__ __forceinline__ int64_t sampled_key(int64_t i) {
    return (i / kTileK) * (kSampleEvery * kTileK) + i % kTileK;
}

struct SampleOut {
    float* out;  // [hc, Tc, n]
    int64_t Tc, n;
    __device__ void begin(int64_t, int64_t, int64_t, int) {}
    __device__ int64_t key_tile(int64_t u) const { return u * kSampleEvery; }
    __device__ void put(int64_t hh, int64_t tr, int, int64_t u, int64_t, int c, float s) {
        out[(hh * Tc + tr) * n + u * kTileK + c] = s;
    }
};

struct FilterAppend {
    const float* thr_s;  // outputs [H, T, K]: slot K - 1 holds the row's bound
    const int64_t* thr_p;
    const int64_t* row_pos;
    float* cand_s;    // [hc * Tc, cap]
    int32_t* cand_r;  // [hc * Tc, cap]
    int* counts;      // [hc * Tc], zero before the launch
    int* overflow;    // set to 1 when a list overflows
    int64_t t0, Tc, T, K, cap;
    uint32_t ts[4];
    uint64_t tp[4];
    // The bounds of the thread's rows tr0 + i * step (slots i < 4; the tensor-core scorer's
    // lanes own 2 rows, 8 apart).
    __device__ void begin(int64_t, int64_t h, int64_t tr0, int step) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int64_t tr = tr0 + i * step;
            ts[i] = 0;  // rows beyond the chunk are never put
            tp[i] = 0;
            if (tr < Tc && t0 + tr < T) {
                const int64_t o = (h * T + t0 + tr) * K + K - 1;
                ts[i] = score_key(thr_s[o]);
                tp[i] = static_cast<uint64_t>(thr_p[o]);
            }
        }
    }
    // Logical tile u -> the u-th tile that is not sampled.
    __device__ int64_t key_tile(int64_t u) const {
        return u / (kSampleEvery - 1) * kSampleEvery + u % (kSampleEvery - 1) + 1;
    }
    __device__ void put(int64_t hh, int64_t tr, int i, int64_t, int64_t j0, int c, float s) {
        const uint32_t sk = score_key(s);
        if (sk > ts[i]) return;
        const int64_t j = j0 + c;
        if (sk == ts[i] && static_cast<uint64_t>(row_pos[j]) >= tp[i]) return;
        const int64_t r = hh * Tc + tr;
        const int n = atomicAdd(&counts[r], 1);
        if (n < cap) {
            cand_s[r * cap + n] = s;
            cand_r[r * cap + n] = static_cast<int32_t>(j);
        } else if (n == cap) {
            *overflow = 1;
        }
    }
};

struct SampledKey {
    __device__ int64_t operator()(int64_t i) const { return sampled_key(i); }
};
using SampledRows = ScoreRowsOf<SampledKey>;  // the sample's scores [rows][n_s]

// A row's sample K best (read from the outputs) followed by its appended keys.
struct Filtered {
    const float* pre_s;  // outputs [H, T, K]
    const int64_t* pre_r;
    const float* cand_s;  // [hc * Tc, cap]
    const int32_t* cand_r;
    const int* counts;
    const int64_t* row_pos;
    int64_t K, cap, n_app;
    __device__ Filtered for_row(int64_t r, int64_t, int64_t o) const {
        Filtered f = *this;
        f.pre_s += o * K;
        f.pre_r += o * K;
        f.cand_s += r * cap;
        f.cand_r += r * cap;
        f.n_app = min64(counts[r], cap);
        return f;
    }
    __device__ int64_t size(int64_t) const { return K + n_app; }
    __device__ int64_t row_of(int64_t i) const { return i < K ? pre_r[i] : cand_r[i - K]; }
    __device__ bool get(int64_t i, float* s, int64_t* row) const {
        const int64_t r = row_of(i);
        if (r < 0) return false;
        *s = i < K ? pre_s[i] : cand_s[i - K];
        *row = r;
        return true;
    }
    __device__ uint64_t pos(int64_t i) const { return static_cast<uint64_t>(row_pos[row_of(i)]); }
};

// ---- tensor-core scores (bf16 keys) -------------------------------------------------------------
// The tiled scores on the tensor cores, fp32-accurate: each query value is split into three bf16
// pieces, q = q0 + q1 + q2 + e with |e| <= 2^-27 |q| (q0 = bf16(q), q1 = bf16(q - q0), q2 =
// bf16(q - q0 - q1); every difference is exact in fp32), and each piece is multiplied by the
// bf16 keys with mma.sync m16n8k16 (exact products, fp32 accumulation; q2, q1, q0 in that order
// per k-step). The scores differ from score_kernel's fmaf chain only by accumulation rounding
// (under the emulator both are within 1e-6 relative of the exact score; the conformance
// tolerance for scores is 1e-5), at ~3 bf16 mma per product instead of one fp32 FMA: with the
// filtered path the fp32 tile kernel would be the bulk of a top-k prefill (an estimate, ~1.6e14
// FLOP at 128k: 3-5 s at its ~33-50 TFLOP/s). Same blocks as score_kernel: 128 threads, 64 queries
// (a warp's 16 rows are its m-tile), logical tiles of kTileK keys mapped by the epilogue, keys
// double-buffered through cp.async. A lane holds its rows' A fragments of all three pieces (3 x DP
// / 16 x 4 registers).
constexpr int tc_score_ld(int DP) {
    return DP + 8;  // bf16 per shared-memory key row: B-fragment loads are conflict-free
}

template <int DP>
size_t score_tc_smem() {
    return sizeof(uint16_t) * 2 * kTileK * tc_score_ld(DP);
}

// Launch bounds of 2 blocks per SM: without a minimum ptxas capped the DP 112 / 128 instances
// at 168 registers and the filter epilogue spilled 4 bytes.
template <int DP, typename Epi>
__global__ void __launch_bounds__(kTileThreads, 2)
    score_tc_kernel(Epi epi, const float* __restrict__ q, int64_t q_stride,
                    const uint16_t* __restrict__ k, int64_t k_head_stride, int64_t h0, int64_t t0,
                    int64_t Tc, int64_t T, int64_t S, int64_t n_tiles, int D, float scale,
                    int chunk) {
    constexpr int kLd = tc_score_ld(DP);
    constexpr int kKs = DP / 16;
    extern __shared__ uint4 smem_tc[];
    uint16_t* Ks = reinterpret_cast<uint16_t*>(smem_tc);  // [2][kTileK][kLd]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, c4 = lane & 3;
    const int64_t hh = blockIdx.z, h = h0 + hh;
    const int64_t tq0 = static_cast<int64_t>(blockIdx.y) * kTileQ;  // within the chunk
    const int64_t u0 = static_cast<int64_t>(blockIdx.x) * kScoreTilesPerBlock;
    const int64_t u1 = min64(n_tiles, u0 + kScoreTilesPerBlock);
    const uint16_t* kh = k + h * k_head_stride;
    // Copies of a stage: rows of D elements in pieces of `chunk` bytes; thread t copies piece
    // t % per_row of rows t / per_row, + row_step, ...
    const int per_row = D * 2 / chunk, row_step = kTileThreads / per_row;
    const int col = (tid % per_row) * (chunk / 2), row0 = tid / per_row;
    auto load_stage = [&](int stage, int64_t u) {
        const int64_t j0 = epi.key_tile(u) * kTileK;
        const int nk = static_cast<int>(min64(kTileK, S - j0));
        uint16_t* dst = Ks + stage * kTileK * kLd;
        if (row0 >= row_step) return;  // threads beyond row_step * per_row copy nothing
        for (int r = row0; r < kTileK; r += row_step) {
            const bool ok = r < nk;
            const uint16_t* src = ok ? kh + (j0 + r) * D + col : kh;
            if (chunk == 16) {
                mma::cp_async<16>(dst + r * kLd + col, src, ok);
            } else if (chunk == 8) {
                mma::cp_async<8>(dst + r * kLd + col, src, ok);
            } else {
                mma::cp_async<4>(dst + r * kLd + col, src, ok);
            }
        }
    };
    if (u0 < u1) load_stage(0, u0);
    mma::cp_async_commit();
    if (D < DP) {  // pad columns of both stages (never copied): zero, so 0 * pad adds nothing
        for (int r = tid; r < 2 * kTileK; r += kTileThreads) {
            for (int c = D; c < DP; ++c) Ks[r * kLd + c] = 0;
        }
    }
    // A fragments: register i of k-step ks holds row g + 8 (i & 1), columns ks * 16 + 8 (i >> 1)
    // + 2 c4 + {0, 1}; rows past the chunk or T and columns past D are zero.
    const int64_t t_end = min64(T, t0 + Tc);
    const int64_t tr_g = tq0 + warp * 16 + g;  // this lane's first row within the chunk
    uint32_t a[3][kKs][4];
#pragma unroll
    for (int ks = 0; ks < kKs; ++ks) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int64_t t = t0 + tr_g + 8 * (i & 1);
            const int d = ks * 16 + 8 * (i >> 1) + 2 * c4;
            float x[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                x[e] = t < t_end && d + e < D ? q[t * q_stride + h * D + d + e] : 0.f;
            }
            float p0[2], p1[2], p2[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                p0[e] = attn::round_bf16(x[e]);
                const float r1 = x[e] - p0[e];
                p1[e] = attn::round_bf16(r1);
                p2[e] = attn::round_bf16(r1 - p1[e]);
            }
            a[0][ks][i] = mma::pack_bf16(p0[0], p0[1]);
            a[1][ks][i] = mma::pack_bf16(p1[0], p1[1]);
            a[2][ks][i] = mma::pack_bf16(p2[0], p2[1]);
        }
    }
    epi.begin(hh, h, tr_g, 8);
    for (int64_t u = u0; u < u1; ++u) {
        const int stage = static_cast<int>((u - u0) & 1);
        if (u + 1 < u1) load_stage(stage ^ 1, u + 1);
        mma::cp_async_commit();
        mma::cp_async_wait<1>();  // this thread's copies of stage `stage` are done
        __syncthreads();          // and everyone's (and the pad columns)
        const uint16_t* ks_tile = Ks + stage * kTileK * kLd;
        float c[kTileK / 8][4];
#pragma unroll
        for (int nt = 0; nt < kTileK / 8; ++nt) c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
#pragma unroll
        for (int ks = 0; ks < kKs; ++ks) {
            // B fragments: key nt * 8 + g, columns ks * 16 + 2 c4 + {0, 1} and + 8.
            uint32_t b[kTileK / 8][2];
#pragma unroll
            for (int nt = 0; nt < kTileK / 8; ++nt) {
                const uint16_t* kr = ks_tile + (nt * 8 + g) * kLd + ks * 16 + 2 * c4;
                b[nt][0] = *reinterpret_cast<const uint32_t*>(kr);
                b[nt][1] = *reinterpret_cast<const uint32_t*>(kr + 8);
            }
            // Pieces smallest first; consecutive mma go to the 4 independent accumulators.
#pragma unroll
            for (int p = 2; p >= 0; --p) {
#pragma unroll
                for (int nt = 0; nt < kTileK / 8; ++nt) mma::mma_bf16_16816(c[nt], a[p][ks], b[nt]);
            }
        }
        const int64_t j0 = epi.key_tile(u) * kTileK;
        const int nk = static_cast<int>(min64(kTileK, S - j0));
#pragma unroll
        for (int nt = 0; nt < kTileK / 8; ++nt) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int slot = i >> 1;  // row g, then g + 8
                const int64_t tr = tr_g + 8 * slot;
                const int key = nt * 8 + 2 * c4 + (i & 1);
                if (tr < Tc && t0 + tr < T && key < nk) {
                    epi.put(hh, tr, slot, u, j0, key, c[nt][i] * scale);
                }
            }
        }
        __syncthreads();  // stage `stage` is read; the next iteration's load may overwrite it
    }
}

// The padded head dim the tensor-core scorer uses for D (0: D is not supported).
int score_tc_dp(int64_t D) {
    if (D < 2 || D % 2 != 0) return 0;
    if (D <= 16) return 16;
    if (D <= 32) return 32;
    if (D <= 64) return 64;
    if (D <= 112) return 112;
    return D <= 128 ? 128 : 0;
}

// Bytes per cp.async for rows of D bf16 at `k` with head stride k_head_stride (0: none fits).
int score_tc_chunk(const void* k, int64_t k_head_stride, int64_t D) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(k);
    for (int c : {16, 8, 4}) {
        if ((D * 2) % c == 0 && base % c == 0 && (k_head_stride * 2) % c == 0) return c;
    }
    return 0;
}

// The tile scores of one pass: score_tc_kernel when `tc` (bf16 keys whose rows allow cp.async),
// else score_kernel.
struct TileScorer {
    bool tc;
    int dp, chunk;
};
TileScorer tile_scorer(bool want_tc, DType k_dtype, const void* k, int64_t k_head_stride,
                       int64_t D) {
    const int dp = score_tc_dp(D), chunk = score_tc_chunk(k, k_head_stride, D);
    return {want_tc && k_dtype == DType::kBF16 && dp > 0 && chunk > 0, dp, chunk};
}

template <typename E, typename Epi>
void launch_tile_scores(const TileScorer& sc, const Epi& epi, int64_t n_tiles, const float* q,
                        int64_t q_stride, const E* k, int64_t k_head_stride, int64_t h0, int64_t t0,
                        int64_t nt, int64_t nh, int64_t T, int64_t S, int64_t D, float scale,
                        cudaStream_t st) {
    if constexpr (std::is_same_v<E, __nv_bfloat16>) {
        if (sc.tc) {
            if (n_tiles <= 0) return;
            const dim3 grid(
                static_cast<unsigned>((n_tiles + kScoreTilesPerBlock - 1) / kScoreTilesPerBlock),
                static_cast<unsigned>((nt + kTileQ - 1) / kTileQ), static_cast<unsigned>(nh));
            auto launch = [&](auto dp_tag) {
                constexpr int DP = decltype(dp_tag)::value;
                score_tc_kernel<DP, Epi><<<grid, kTileThreads, score_tc_smem<DP>(), st>>>(
                    epi, q, q_stride, reinterpret_cast<const uint16_t*>(k), k_head_stride, h0, t0,
                    nt, T, S, n_tiles, static_cast<int>(D), scale, sc.chunk);
            };
            switch (sc.dp) {
                case 16:
                    launch(std::integral_constant<int, 16>{});
                    break;
                case 32:
                    launch(std::integral_constant<int, 32>{});
                    break;
                case 64:
                    launch(std::integral_constant<int, 64>{});
                    break;
                case 112:
                    launch(std::integral_constant<int, 112>{});
                    break;
                default:
                    launch(std::integral_constant<int, 128>{});
                    break;
            }
            FOT_CUDA_CHECK(cudaGetLastError());
            return;
        }
    }
    launch_scores<E>(epi, n_tiles, q, q_stride, k, k_head_stride, h0, t0, nt, nh, T, S, D, scale,
                     st);
}

struct FilterShape {
    int64_t tiles, sample_tiles, n_s, other_tiles, cap;
    int64_t stride() const { return std::max(n_s, 2 * cap); }  // scratch floats per row
};
FilterShape filter_shape(int64_t S, int64_t K) {
    FilterShape f;
    f.tiles = (S + kTileK - 1) / kTileK;
    f.sample_tiles = (f.tiles + kSampleEvery - 1) / kSampleEvery;
    const int64_t last = (f.sample_tiles - 1) * kSampleEvery * kTileK;  // first key of it
    f.n_s = (f.sample_tiles - 1) * kTileK + std::min<int64_t>(kTileK, S - last);
    f.other_tiles = f.tiles - f.sample_tiles;
    f.cap = std::min(kFilterCapPerK * K, S - f.n_s);
    return f;
}

// ---- threshold ---------------------------------------------------------------------------------
__global__ void __launch_bounds__(kSmallThreads)
    threshold_kernel(float* thr_score, int64_t* thr_pos, const float* __restrict__ scores,
                     const int64_t* __restrict__ positions, int64_t R, int64_t H, int64_t T,
                     int64_t K) {
    pdl_start();
    __shared__ RadixSmem sm;
    const int64_t h = blockIdx.y, t = blockIdx.x;
    auto index = [&](int64_t i) {
        const int64_t r = i / K, c = i - r * K;
        return ((r * H + h) * T + t) * K + c;
    };
    auto score_of = [&](int64_t i, uint32_t* sk) {
        const int64_t x = index(i);
        if (positions[x] < 0) return false;
        *sk = score_key(scores[x]);
        return true;
    };
    auto pos_of = [&](int64_t i) { return static_cast<uint64_t>(positions[index(i)]); };
    uint32_t ts;
    uint64_t tp;
    const bool ok = block_radix_kth(R * K, K, score_of, pos_of, sm, &ts, &tp);
    if (threadIdx.x == 0) {
        thr_score[h * T + t] = ok ? score_from_key(ts) : kNegInf;
        thr_pos[h * T + t] = ok ? static_cast<int64_t>(tp) : INT64_MAX;
    }
}

// One rank (R == 1, every decode step without memory parallelism): the K-th best of K items is
// the worst real one when all K are real, else nothing is cut. One warp per (h, t) row finds
// it in one pass instead of a block's radix passes (32 rows in decode: a latency, not a load).
constexpr int kThresholdWarps = 4;
__global__ void __launch_bounds__(kThresholdWarps * 32)
    threshold_one_rank_kernel(float* thr_score, int64_t* thr_pos, const float* __restrict__ scores,
                              const int64_t* __restrict__ positions, int64_t rows, int64_t K) {
    pdl_start();
    const int lane = threadIdx.x & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kThresholdWarps + (threadIdx.x >> 5);
    if (row >= rows) return;  // warp-uniform; no block barrier follows
    // The largest (worst) key of the real items; (0, 0) is below every key.
    int64_t n = 0;
    uint32_t ws = 0;
    uint64_t wp = 0;
    for (int64_t c = lane; c < K; c += 32) {
        const int64_t p = positions[row * K + c];
        if (p < 0) continue;
        const uint32_t sk = score_key(scores[row * K + c]);
        ++n;
        if (key_less(ws, wp, sk, static_cast<uint64_t>(p))) {
            ws = sk;
            wp = static_cast<uint64_t>(p);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        n += __shfl_xor_sync(0xffffffffu, n, o);
        const uint32_t os = __shfl_xor_sync(0xffffffffu, ws, o);
        const uint64_t op = __shfl_xor_sync(0xffffffffu, wp, o);
        if (key_less(ws, wp, os, op)) {
            ws = os;
            wp = op;
        }
    }
    if (lane == 0) {
        thr_score[row] = n == K ? score_from_key(ws) : kNegInf;
        thr_pos[row] = n == K ? static_cast<int64_t>(wp) : INT64_MAX;
    }
}

// ---- attention over the selected candidates ----------------------------------------------------
constexpr int kSelChunk = 1024;  // candidates staged in shared memory at a time
constexpr int kSelBatch = 8;     // value rows loaded before they are summed

// One block per (h, t); thread d owns output dim d (D <= blockDim.x). Pass 1 finds the new
// running max over the passing candidates; then chunks of candidates are staged (weight,
// value row) and folded in slot order, as the CPU does.
template <typename E>
__global__ void __launch_bounds__(kSmallThreads)
    selected_kernel(float* part, const E* __restrict__ v, int64_t v_head_stride,
                    const float* __restrict__ scores, const int64_t* __restrict__ rows,
                    const int64_t* __restrict__ positions, const float* __restrict__ thr_score,
                    const int64_t* __restrict__ thr_pos, int64_t H, int64_t T, int64_t D,
                    int64_t K) {
    pdl_start();
    __shared__ float p[kSelChunk];       // exp weight of a passing candidate
    __shared__ int64_t vrow[kSelChunk];  // its value row, -1 when it does not pass
    __shared__ float redf[32];
    __shared__ int redi[32];
    const int64_t h = blockIdx.y, t = blockIdx.x, o = h * T + t, base = o * K;
    float* st = part + o * (D + 2);
    const float ts = thr_score[o];
    const int64_t tp = thr_pos[o];
    auto passes = [&](int64_t i) {
        const float s = scores[base + i];
        return rows[base + i] >= 0 && (s > ts || (s == ts && positions[base + i] <= tp));
    };
    const float m_old = st[D];
    const float l_old = st[D + 1];

    float mx = kNegInf;
    int n = 0;
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
        if (passes(i)) {
            mx = fmaxf(mx, scores[base + i]);
            ++n;
        }
    }
    mx = block_max(mx, redf);
    n = block_sum(n, redi);
    if (n == 0) return;  // uniform: every thread got the same n
    const float m_new = fmaxf(m_old, mx);
    const float corr = (m_old == kNegInf) ? 0.f : expf(m_old - m_new);
    const E* vh = v + h * v_head_stride;
    const int64_t d = threadIdx.x;
    float a = d < D ? st[d] * corr : 0.f;
    float l = l_old * corr;  // thread 0's copy is the one written
    for (int64_t c0 = 0; c0 < K; c0 += kSelChunk) {
        const int64_t nc = min64(kSelChunk, K - c0);
        __syncthreads();  // the previous chunk is no longer read
        for (int64_t i = threadIdx.x; i < nc; i += blockDim.x) {
            const bool ok = passes(c0 + i);
            vrow[i] = ok ? rows[base + c0 + i] : -1;
            p[i] = ok ? expf(scores[base + c0 + i] - m_new) : 0.f;
        }
        __syncthreads();
        // kSelBatch value rows in flight before they are summed (in slot order, as before): one
        // block per (h, t) is few blocks in decode (32 on 132 SMs), and a load-then-add per
        // candidate waited one memory round trip per candidate.
        auto fold = [&](int64_t i, float v) {
            if (vrow[i] < 0) return;
            if (d < D) a += p[i] * v;
            if (threadIdx.x == 0) l += p[i];
        };
        int64_t i = 0;
        for (; i + kSelBatch <= nc; i += kSelBatch) {
            float v[kSelBatch];
#pragma unroll
            for (int u = 0; u < kSelBatch; ++u) {
                const int64_t r = vrow[i + u];
                v[u] = r >= 0 && d < D ? to_f32(vh[r * D + d]) : 0.f;
            }
#pragma unroll
            for (int u = 0; u < kSelBatch; ++u) fold(i + u, v[u]);
        }
        for (; i < nc; ++i) fold(i, vrow[i] >= 0 && d < D ? to_f32(vh[vrow[i] * D + d]) : 0.f);
    }
    if (d < D) st[d] = a;
    if (threadIdx.x == 0) {
        st[D] = m_new;
        st[D + 1] = l;
    }
}

__global__ void fill_absent_kernel(float* scores, int64_t* rows, int64_t* positions, int64_t n) {
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (; i < n; i += step) {
        scores[i] = kNegInf;
        rows[i] = -1;
        positions[i] = -1;
    }
}

int next_pow2(int64_t x) {
    int p = 1;
    while (p < x) p <<= 1;
    return p;
}

// Slices of a row's scores for the sliced select (1: one block per row). Worth a second launch
// when the row spans at least 4 slices and a slice's K best are a small part of it.
int64_t select_slices(int64_t S, int64_t K) {
    if (next_pow2(std::min(K, S)) > kSharedTopK || 4 * K > kSliceItems || S > INT32_MAX) return 1;
    const int64_t b = std::min(kMaxSlices, (S + kSliceItems - 1) / kSliceItems);
    return b >= 4 ? b : 1;
}

}  // namespace

namespace {

// The filtered path's passes: rows (whole heads, or slices of one head's queries) whose sample
// scores, or candidate lists, fit the scratch; per pass a sample scoring, a select over it, the
// filter scoring and the final select. Returns whether a list overflowed (then the outputs are
// not the top-k): it waits for the stream to know.
bool memory_topk_filtered(float* scores, int64_t* rows, int64_t* positions, const float* q,
                          int64_t q_stride, const void* k, DType k_dtype, int64_t k_head_stride,
                          const int64_t* row_pos, int64_t H, int64_t T, int64_t S, int64_t D,
                          int64_t K, float scale, float* scratch, int64_t scratch_floats,
                          cudaStream_t st, TopkFilterStats* stats, const TileScorer& scorer) {
    const FilterShape f = filter_shape(S, K);
    if (stats) stats->cap = f.cap;
    const int64_t stride = f.stride();
    // The overflow flag takes the scratch's last float.
    int* overflow = reinterpret_cast<int*>(scratch + scratch_floats - 1);
    FOT_CUDA_CHECK(cudaMemsetAsync(overflow, 0, sizeof(int), st));
    const int64_t rows_fit = (scratch_floats - 1) / (stride + 1);
    int64_t hc, Tc;
    if (rows_fit >= T) {
        hc = std::min(H, rows_fit / T);
        Tc = T;
    } else {
        // Passes of equal size: 2048 queries in passes of at most 2047 rows are 2 x 1024, not
        // 2047 + 1 (a pass of one row would still take its 4 launches).
        hc = 1;
        const int64_t passes = (T + rows_fit - 1) / rows_fit;
        Tc = (T + passes - 1) / passes;
    }
    // Scratch: [hc * Tc rows of stride floats: sample scores, later the candidates' scores then
    // rows] then [hc * Tc counts].
    float* region = scratch;
    int* counts = reinterpret_cast<int*>(scratch + hc * Tc * stride);
    const int Kp = next_pow2(K);
    const size_t select_smem = static_cast<size_t>(Kp) * kCandFloats * sizeof(float);
    for (int64_t h0 = 0; h0 < H; h0 += hc) {
        const int64_t nh = std::min(hc, H - h0);
        for (int64_t t0 = 0; t0 < T; t0 += Tc) {
            const int64_t nt = std::min(Tc, T - t0), n_rows = nh * nt;
            float* cand_s = region;
            int32_t* cand_r = reinterpret_cast<int32_t*>(region + n_rows * f.cap);
            const dim3 grid(static_cast<unsigned>(nt), static_cast<unsigned>(nh));
            dispatch_float_dtype(k_dtype, "cuda memory_topk keys", [&](auto* tag) {
                using E = std::remove_pointer_t<decltype(tag)>;
                const E* ke = static_cast<const E*>(k);
                launch_tile_scores<E>(scorer, SampleOut{region, nt, f.n_s}, f.sample_tiles, q,
                                      q_stride, ke, k_head_stride, h0, t0, nt, nh, T, S, D, scale,
                                      st);
                const SampledRows sample{region, row_pos};
                const FilterAppend append{scores, positions, row_pos, cand_s, cand_r,
                                          counts, overflow,  t0,      nt,     T,
                                          K,      f.cap,     {},      {}};
                const Filtered filtered{scores, rows, cand_s, cand_r, counts, row_pos, K, f.cap, 0};
                auto selects = [&](auto threads) {
                    constexpr int kThreads = decltype(threads)::value;
                    launch_pdl(select_kernel<kThreads, SampledRows>, grid, kThreads, select_smem,
                               st, scores, rows, positions, sample, h0, t0, nt, T, f.n_s, K, Kp,
                               nullptr);
                    FOT_CUDA_CHECK(cudaGetLastError());
                    FOT_CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(int) * n_rows, st));
                    launch_tile_scores<E>(scorer, append, f.other_tiles, q, q_stride, ke,
                                          k_head_stride, h0, t0, nt, nh, T, S, D, scale, st);
                    launch_pdl(select_kernel<kThreads, Filtered>, grid, kThreads, select_smem, st,
                               scores, rows, positions, filtered, h0, t0, nt, T, 0, K, Kp, nullptr);
                    FOT_CUDA_CHECK(cudaGetLastError());
                };
                if (n_rows <= kFewSelectRows) {
                    selects(std::integral_constant<int, kSelectThreadsFew>{});
                } else {
                    selects(std::integral_constant<int, kSelectThreads>{});
                }
            });
            if (stats) {
                std::vector<int> c(static_cast<size_t>(n_rows));
                FOT_CUDA_CHECK(cudaMemcpyAsync(c.data(), counts, sizeof(int) * c.size(),
                                               cudaMemcpyDeviceToHost, st));
                FOT_CUDA_CHECK(cudaStreamSynchronize(st));
                for (int n : c) {
                    stats->rows += 1;
                    stats->overflow_rows += n > f.cap;
                    stats->appended += n;
                    stats->max_appended = std::max<int64_t>(stats->max_appended, n);
                }
            }
        }
    }
    int flag = 0;
    FOT_CUDA_CHECK(cudaMemcpyAsync(&flag, overflow, sizeof(int), cudaMemcpyDeviceToHost, st));
    FOT_CUDA_CHECK(cudaStreamSynchronize(st));
    return flag != 0;
}

}  // namespace

int64_t memory_topk_row_scratch(int64_t S, int64_t K) {
    const int64_t Kp = next_pow2(std::min(K, std::max<int64_t>(S, 1)));  // candidates <= min(K, S)
    // Beyond the scores: room to sort large K, or (exclusive with it) the sliced select's
    // candidates (score and row of slices x K).
    const int64_t slices = select_slices(std::max<int64_t>(S, 1), K);
    const int64_t score_rows =
        S + (Kp > kSharedTopK ? kCandFloats * Kp : (slices > 1 ? 2 * slices * K : 0));
    // The filtered path: sample scores or candidates, and a count (and the call's overflow
    // flag).
    const int64_t filtered = S >= 1 && K >= 1 ? filter_shape(S, K).stride() + 2 : 0;
    return std::max(score_rows, filtered);
}

bool memory_topk_filtered_supported(int64_t S, int64_t D, int64_t K) {
    if (K < 1 || next_pow2(K) > kSharedTopK || S < 1 || S > INT32_MAX || D < 1 || D > kMaxHeadDim) {
        return false;
    }
    const FilterShape f = filter_shape(S, K);
    return f.n_s >= 4 * K && f.other_tiles >= 1;
}

void memory_topk(float* scores, int64_t* rows, int64_t* positions, const float* q, int64_t q_stride,
                 const void* k, DType k_dtype, int64_t k_head_stride, const int64_t* row_pos,
                 int64_t H, int64_t T, int64_t S, int64_t D, int64_t K, float scale, float* scratch,
                 int64_t scratch_floats, void* stream) {
    memory_topk(scores, rows, positions, q, q_stride, k, k_dtype, k_head_stride, row_pos, H, T, S,
                D, K, scale, scratch, scratch_floats, stream, TopkPath::kAuto);
}

void memory_topk(float* scores, int64_t* rows, int64_t* positions, const float* q, int64_t q_stride,
                 const void* k, DType k_dtype, int64_t k_head_stride, const int64_t* row_pos,
                 int64_t H, int64_t T, int64_t S, int64_t D, int64_t K, float scale, float* scratch,
                 int64_t scratch_floats, void* stream, TopkPath path, TopkFilterStats* stats,
                 bool tc_scores) {
    FOT_CHECK(K >= 1 && K <= (int64_t{1} << 28), "cuda memory_topk: k=", K, " is out of range");
    FOT_CHECK(H <= 65535, "cuda memory_topk: ", H, " heads exceed the grid limit");
    if (H <= 0 || T <= 0) return;
    cudaStream_t st = as_stream(stream);
    if (S <= 0) {  // no memory on this rank: every slot absent
        const int64_t n = H * T * K;
        fill_absent_kernel<<<grid_for(n, 256), 256, 0, st>>>(scores, rows, positions, n);
        FOT_CUDA_CHECK(cudaGetLastError());
        return;
    }
    FOT_CHECK(D >= 1 && D <= kMaxHeadDim, "cuda memory_topk: head_dim ", D,
              " is not supported (1 .. ", kMaxHeadDim, ")");
    const int64_t row_floats = memory_topk_row_scratch(S, K);
    FOT_CHECK(scratch != nullptr && scratch_floats >= row_floats, "cuda memory_topk: scratch of ",
              scratch_floats, " floats is below one row (", row_floats, ")");
    // One scorer for every pass of the call, whatever a pass's size: the paths and scratch
    // sizes then agree bit for bit.
    const TileScorer scorer = tile_scorer(tc_scores, k_dtype, k, k_head_stride, D);
    const bool filtered_ok = memory_topk_filtered_supported(S, D, K);
    FOT_CHECK(path != TopkPath::kFiltered || filtered_ok,
              "cuda memory_topk: the filtered path does not take S=", S, ", k=", K,
              " (it needs k <= ", kSharedTopK, " and a sample of at least 4k keys)");
    // kAuto filters when the tiled scorer runs (more than kDecodeRows queries): see the
    // filtered path above. (It replaced a fused path of per-chunk candidate lists in shared
    // memory, 8-15x slower than score rows on an H200: one block of 8 warps per SM and
    // warp-serial list sorts.)
    if (path == TopkPath::kFiltered ||
        (path == TopkPath::kAuto && T > kDecodeRows && filtered_ok)) {
        if (!memory_topk_filtered(scores, rows, positions, q, q_stride, k, k_dtype, k_head_stride,
                                  row_pos, H, T, S, D, K, scale, scratch, scratch_floats, st, stats,
                                  scorer)) {
            return;
        }
        path = TopkPath::kScoreRows;  // a list overflowed: the call again, through score rows
    }
    const int Kp = next_pow2(std::min(K, S));  // candidate storage: at most min(K, S)
    const bool shared = Kp <= kSharedTopK;
    const size_t select_smem = shared ? static_cast<size_t>(Kp) * kCandFloats * sizeof(float) : 0;
    // Rows per pass: whole heads when they fit, else a slice of one head's queries.
    const int64_t rows_fit = scratch_floats / row_floats;
    int64_t hc, Tc;
    if (rows_fit >= T) {
        hc = std::min(H, rows_fit / T);
        Tc = T;
    } else {
        hc = 1;
        Tc = rows_fit;
    }
    // Scratch: [hc * Tc rows of candidates (large K only)] then [hc * Tc rows of S scores]
    // then (sliced select only) [hc * Tc rows of slices x K candidate scores, then rows].
    float* cand = shared ? nullptr : scratch;
    float* score_rows = scratch + (shared ? 0 : hc * Tc * kCandFloats * Kp);
    const int64_t slices = path == TopkPath::kScoreRowsOneBlock ? 1 : select_slices(S, K);
    float* slice_s = score_rows + hc * Tc * S;
    int32_t* slice_r = reinterpret_cast<int32_t*>(slice_s + hc * Tc * slices * K);
    // Few queries in the call (decode): the lane-per-key scoring kernel over staged rows, when the
    // key rows allow 8-byte copies.
    const int64_t esz = static_cast<int64_t>(dtype_size(k_dtype));
    const bool decode_scores = T <= kDecodeRows && reinterpret_cast<uintptr_t>(k) % 8 == 0 &&
                               (D * esz) % 8 == 0 && (k_head_stride * esz) % 8 == 0;
    for (int64_t h0 = 0; h0 < H; h0 += hc) {
        const int64_t nh = std::min(hc, H - h0);
        for (int64_t t0 = 0; t0 < T; t0 += Tc) {
            const int64_t nt = std::min(Tc, T - t0);
            dispatch_float_dtype(k_dtype, "cuda memory_topk keys", [&](auto* tag) {
                using E = std::remove_pointer_t<decltype(tag)>;
                if (decode_scores) {
                    const dim3 grid(
                        static_cast<unsigned>((S + kDecodeScoreThreads - 1) / kDecodeScoreThreads),
                        static_cast<unsigned>(nh));
                    const size_t smem = score_decode_smem(D, esz);
                    auto launch = [&](auto kernel) {
                        FOT_CUDA_CHECK(cudaFuncSetAttribute(
                            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            static_cast<int>(smem)));
                        launch_pdl(kernel, grid, kDecodeScoreThreads, smem, st, score_rows, q,
                                   q_stride, static_cast<const E*>(k), k_head_stride, h0, t0, Tc,
                                   nt, S, static_cast<int>(D), scale);
                    };
                    if (nt == 1) {
                        launch(score_decode_kernel<E, 1>);
                    } else {
                        launch(score_decode_kernel<E, kDecodeRows>);
                    }
                    return;
                }
                launch_tile_scores<E>(scorer, RowsOut{score_rows, nt, S}, (S + kTileK - 1) / kTileK,
                                      q, q_stride, static_cast<const E*>(k), k_head_stride, h0, t0,
                                      nt, nh, T, S, D, scale, st);
            });
            FOT_CUDA_CHECK(cudaGetLastError());
            const dim3 grid(static_cast<unsigned>(nt), static_cast<unsigned>(nh));
            if (slices > 1 && nt * nh < kSliceMaxRows) {
                const int64_t L = (S + slices - 1) / slices;
                launch_pdl(slice_select_kernel, dim3(grid.x, grid.y, static_cast<unsigned>(slices)),
                           kSliceThreads, 0, st, slice_s, slice_r, score_rows, row_pos, Tc, S, L,
                           K);
                FOT_CUDA_CHECK(cudaGetLastError());
                const Candidates items{slice_s, slice_r, row_pos};
                if (nt * nh <= kFewSelectRows) {
                    launch_pdl(select_kernel<kSelectThreadsFew, Candidates>, grid,
                               kSelectThreadsFew, select_smem, st, scores, rows, positions, items,
                               h0, t0, nt, T, slices * K, K, Kp, nullptr);
                } else {
                    launch_pdl(select_kernel<kSelectThreads, Candidates>, grid, kSelectThreads,
                               select_smem, st, scores, rows, positions, items, h0, t0, nt, T,
                               slices * K, K, Kp, nullptr);
                }
            } else if (nt * nh <= kFewSelectRows) {
                launch_pdl(select_kernel<kSelectThreadsFew, ScoreRows>, grid, kSelectThreadsFew,
                           select_smem, st, scores, rows, positions, ScoreRows{score_rows, row_pos},
                           h0, t0, nt, T, S, K, Kp, cand);
            } else {
                launch_pdl(select_kernel<kSelectThreads, ScoreRows>, grid, kSelectThreads,
                           select_smem, st, scores, rows, positions, ScoreRows{score_rows, row_pos},
                           h0, t0, nt, T, S, K, Kp, cand);
            }
            FOT_CUDA_CHECK(cudaGetLastError());
        }
    }
}

void topk_threshold(float* thr_score, int64_t* thr_pos, const float* scores,
                    const int64_t* positions, int64_t R, int64_t H, int64_t T, int64_t K,
                    void* stream) {
    FOT_CHECK(H <= 65535, "cuda topk_threshold: ", H, " heads exceed the grid limit");
    if (H <= 0 || T <= 0) return;
    if (R == 1) {
        const int64_t rows = H * T;
        launch_pdl(threshold_one_rank_kernel,
                   dim3(static_cast<unsigned>((rows + kThresholdWarps - 1) / kThresholdWarps)),
                   kThresholdWarps * 32, 0, as_stream(stream), thr_score, thr_pos, scores,
                   positions, rows, K);
        FOT_CUDA_CHECK(cudaGetLastError());
        return;
    }
    const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(H));
    launch_pdl(threshold_kernel, grid, kSmallThreads, 0, as_stream(stream), thr_score, thr_pos,
               scores, positions, R, H, T, K);
    FOT_CUDA_CHECK(cudaGetLastError());
}

void attn_accumulate_selected(float* part, const void* v, DType v_dtype, int64_t v_head_stride,
                              const float* scores, const int64_t* rows, const int64_t* positions,
                              const float* thr_score, const int64_t* thr_pos, int64_t H, int64_t T,
                              int64_t D, int64_t K, void* stream) {
    FOT_CHECK(K >= 1, "cuda attn_accumulate_selected: k=", K, " is out of range");
    FOT_CHECK(D >= 1 && D <= kMaxHeadDim && kMaxHeadDim <= kSmallThreads,
              "cuda attn_accumulate_selected: head_dim ", D, " is not supported (1 .. ",
              kMaxHeadDim, ")");
    FOT_CHECK(H <= 65535, "cuda attn_accumulate_selected: ", H, " heads exceed the grid limit");
    if (H <= 0 || T <= 0) return;
    const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(H));
    dispatch_float_dtype(v_dtype, "cuda attn_accumulate_selected values", [&](auto* tag) {
        using E = std::remove_pointer_t<decltype(tag)>;
        launch_pdl(selected_kernel<E>, grid, kSmallThreads, 0, as_stream(stream), part,
                   static_cast<const E*>(v), v_head_stride, scores, rows, positions, thr_score,
                   thr_pos, H, T, D, K);
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
