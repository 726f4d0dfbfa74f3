// GEMV for decode-sized matmuls (T <= kGemvMaxT tokens): out[T, N] = x[T, K] * w[N, K]^T with
// the arithmetic of the cuBLAS path (kernels/cuda/blas.h): bf16/f16 weights multiply x
// rounded to the weight's type, f32 weights multiply f32 x, fp32 accumulation.
//
// Reading the weights once is the whole cost (6.85 GB per token for LongLLaMA-3B). A matrix
// of the 3B shape is 20-55 MB, 4-12 us at the H200's bandwidth: a kernel this short is
// latency-bound unless nearly all of it is in flight at once. So each warp streams two rows
// of w with 16-byte loads over one slice of K: the block's 8 warps are split-K groups of
// `split` warps (split 1, 2, 4 or 8, from K alone: about 4 loads per lane per row), each
// lane issues up to 4 loads per row before it multiplies (predicated, so a lane with 3 chunks
// left does not fall back to one load at a time), and a fixed-order sum over the group's
// slices in shared memory finishes each output. With one warp per row pair over all of K
// (split 1, session 9), the 3200-row matrices ran as 200 blocks on 132 SMs at 41-55% of DRAM
// peak (ncu). x comes through L1 (it is small and every warp reads it).
//
// Epilogues that save a launch each: gate|up with SiLU-mul (gemv_silu_mul), and o_proj /
// down_proj with the residual add and the next RMSNorm in the grid's last block
// (gemv_add_rmsnorm).
//
// Order of the sums, the same for every T and every grouping (so a row's bits depend on K and
// the dtypes only): lane l of slice s takes chunks c = s * 32 + l + i * 32 * split for
// i = 0, 1, ..., in order; the slice's lanes are summed by warp_sum; the slices 0 .. split-1
// are added in order.
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.cuh"

namespace fot::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = 2;
constexpr int kInFlight = 4;  // 16-byte loads per lane and row issued before the multiplies

// x rounded as the weight's type rounds it (the cuBLAS path converts x to w's type).
template <typename W>
__device__ __forceinline__ float as_operand(float x) {
    if constexpr (std::is_same_v<W, float>) {
        return x;
    } else {
        return to_f32(from_f32<W>(x));
    }
}

// X: float (rounded here), or W itself (x already rounded to the weight's type by its producer).
// Up to kGemvMaxGroup matmuls of one x in one launch: matrix i takes the warps of rows
// [first[i], first[i] + N[i]) of the launch (first[i] a multiple of kRowsPerWarp, so no warp
// spans two matrices). Each output row is computed exactly as a single-matrix launch does.
// silu != 0: the fused gate|up mode (gemv_silu_mul): w[0] = gate, w[1] = up, N[0] = I, and
// warp pair j takes row j of each, so one warp holds both dots of act[t, j] and writes
// silu_times(gate . x, up . x) to act_w (W) or act_f (f32) instead of the two f32 outputs.
// ticket != nullptr: the add + RMSNorm mode (gemv_add_rmsnorm): one matrix, out[0] = proj
// [T, N]; the grid's last block to finish adds proj into the residual stream nx [T, N] and
// writes rmsnorm(nx) * nw to xn_f (f32) or xn_w (W).
template <typename W>
struct Targets {
    float* out[kGemvMaxGroup];
    const W* w[kGemvMaxGroup];
    int64_t N[kGemvMaxGroup];
    int64_t first[kGemvMaxGroup];
    int n;
    int silu;
    W* act_w;
    float* act_f;
    unsigned* ticket;
    float* nx;
    const float* nw;
    float* xn_f;
    W* xn_w;
    float eps;
};

template <typename W>
__device__ __forceinline__ void store_act(const Targets<W>& tg, int64_t i, float g, float u) {
    const float a = silu_times(g, u);
    if (tg.act_f != nullptr) {
        tg.act_f[i] = a;
    } else {
        tg.act_w[i] = from_f32<W>(a);
    }
}

// Both rows of a warp for token t: v0 of row ra, v1 of row rb (rb < N unless the matrix has
// an odd row count); in the gate|up mode, act column ra.
template <typename W>
__device__ __forceinline__ void store_rows(const Targets<W>& tg, float* out, int N, int ra, int rb,
                                           int t, float v0, float v1) {
    const int64_t o = static_cast<int64_t>(t) * N;
    if (tg.silu) {
        store_act(tg, o + ra, v0, v1);
        return;
    }
    out[o + ra] = v0;
    if (rb < N) out[o + rb] = v1;
}

// The add + RMSNorm epilogue: every block publishes its rows of proj and takes a ticket; the
// block that takes the last one sees all of proj (threadFenceReduction's pattern) and runs
// add_rmsnorm's rows with its arithmetic (rmsnorm_row: the same bits, as this block has
// add_rmsnorm's 256 threads). It re-arms the ticket for the next launch. The serial tail is
// one block over T x N values (3200 in decode), where a separate launch would cost a grid drain
// and a launch.
template <typename W>
__device__ __forceinline__ void add_rmsnorm_last_block(const Targets<W>& tg, int T) {
    __shared__ float red[32];
    __shared__ int last_block;
    __threadfence();
    __syncthreads();  // every thread's proj writes are fenced before the ticket
    if (threadIdx.x == 0) last_block = atomicAdd(tg.ticket, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last_block) return;
    __threadfence();
    const int64_t C = tg.N[0];
    for (int t = 0; t < T; ++t) {
        if (tg.xn_f != nullptr) {
            rmsnorm_row<float, true>(tg.xn_f + t * C, tg.nx + t * C, tg.out[0] + t * C, tg.nw, C,
                                     tg.eps, red);
        } else {
            rmsnorm_row<W, true>(tg.xn_w + t * C, tg.nx + t * C, tg.out[0] + t * C, tg.nw, C,
                                 tg.eps, red);
        }
    }
    if (threadIdx.x == 0) *tg.ticket = 0;
}

// Launch bounds: one token (decode proper) fits 64 registers, 4 blocks per SM, so more of a
// matrix is in flight at once; larger T gets what it needs (a minimum of 1 block, because
// without one ptxas capped some instances at 64-80 registers and spilled).
template <typename W, typename X, int kT>
__global__ void __launch_bounds__(kThreads, kT == 1 ? 4 : 1)
    gemv_kernel(Targets<W> tg, const X* __restrict__ x, int64_t K, int split) {
    static_assert(std::is_same_v<X, float> || std::is_same_v<X, W>, "x is f32 or w's type");
    constexpr int kE = 16 / sizeof(W);  // weights per 16-byte load
    __shared__ float red[kWarps][kRowsPerWarp][kT];
    const int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
    const int slice = wib % split;
    const int64_t pair = static_cast<int64_t>(blockIdx.x) * (kWarps / split) + wib / split;
    // The warp's matrix, by static indices only (a dynamic index would copy the parameters
    // to local memory).
    float* out = tg.out[0];
    const W* w = tg.w[0];
    int N = static_cast<int>(tg.N[0]);
    int64_t first = tg.first[0];
#pragma unroll
    for (int i = 1; i < kGemvMaxGroup; ++i) {
        if (i < tg.n && pair * kRowsPerWarp >= tg.first[i]) {
            out = tg.out[i];
            w = tg.w[i];
            N = static_cast<int>(tg.N[i]);
            first = tg.first[i];
        }
    }
    // 32-bit row indices (launch_t checks the launch's row count).
    int n0 = static_cast<int>(pair * kRowsPerWarp - first);
    if (tg.silu) n0 = static_cast<int>(pair);  // act column j = pair: gate row j and up row j
    const bool live = n0 < N;  // dead warps of the last block still meet the barrier
    // The warp's two output rows (row b may be N: an odd matrix's missing last row).
    const int ra = n0, rb = n0 + 1;
    // 32-bit chunk indices: K < 2^31 / 8 is far beyond any model (gemv_supported checks it).
    const int chunks = static_cast<int>(K / kE), c0 = slice * 32 + lane, stride = 32 * split;
    const int n_chunks = live && c0 < chunks ? (chunks - 1 - c0) / stride + 1 : 0;
    float acc[kRowsPerWarp][kT];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
        for (int t = 0; t < kT; ++t) acc[r][t] = 0.f;
    }
    const uint4* rows[kRowsPerWarp];
    if (tg.silu) {
        const int64_t j = live ? n0 : 0;
        rows[0] = reinterpret_cast<const uint4*>(tg.w[0] + j * K);
        rows[1] = reinterpret_cast<const uint4*>(tg.w[1] + j * K);
    } else {
        // a missing last row repeats the first
        rows[0] = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(live ? ra : 0) * K);
        rows[1] = reinterpret_cast<const uint4*>(
            w + static_cast<int64_t>(live ? (rb < N ? rb : ra) : 0) * K);
    }
    uint4 raw[kInFlight][kRowsPerWarp];
    auto load_round = [&](int i0) {
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) {
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) {
                raw[u][r] = i0 + u < n_chunks ? __ldg(rows[r] + c0 + (i0 + u) * stride)
                                              : make_uint4(0, 0, 0, 0);
            }
        }
    };
    // The weights are written by no kernel of a step (they are loaded once), so the first round
    // of them is requested before the wait for the previous kernel (pdl.cuh): a programmatic
    // launch's blocks start while that kernel drains, and with split K a lane's first round is
    // often all of its weights. Only x (the previous kernel's output) is read after the wait.
    load_round(0);
    pdl_start();
    for (int i0 = 0; i0 < n_chunks; i0 += kInFlight) {
        if (i0 > 0) load_round(i0);
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) {
            if (i0 + u >= n_chunks) continue;
            const int c = c0 + (i0 + u) * stride;
            float xv[kT][kE];
#pragma unroll
            for (int t = 0; t < kT; ++t) {
                if constexpr (std::is_same_v<X, float>) {
                    const float4* xp = reinterpret_cast<const float4*>(x + t * K + c * kE);
#pragma unroll
                    for (int q = 0; q < kE / 4; ++q) {
                        const float4 f = __ldg(xp + q);
                        xv[t][4 * q] = as_operand<W>(f.x);
                        xv[t][4 * q + 1] = as_operand<W>(f.y);
                        xv[t][4 * q + 2] = as_operand<W>(f.z);
                        xv[t][4 * q + 3] = as_operand<W>(f.w);
                    }
                } else {  // kE elements of w's type: one 16-byte load
                    const uint4 xr = __ldg(reinterpret_cast<const uint4*>(x + t * K + c * kE));
                    const X* e = reinterpret_cast<const X*>(&xr);
#pragma unroll
                    for (int q = 0; q < kE; ++q) xv[t][q] = to_f32(e[q]);
                }
            }
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) {
                const W* e = reinterpret_cast<const W*>(&raw[u][r]);
#pragma unroll
                for (int q = 0; q < kE; ++q) {
                    const float wv = to_f32(e[q]);
#pragma unroll
                    for (int t = 0; t < kT; ++t) acc[r][t] = fmaf(xv[t][q], wv, acc[r][t]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
        for (int t = 0; t < kT; ++t) acc[r][t] = warp_sum(acc[r][t]);
    }
    static_assert(kRowsPerWarp == 2, "the fused gate|up mode pairs row 0 (gate) and row 1 (up)");
    if (split == 1) {
        if (lane == 0 && live) {
#pragma unroll
            for (int t = 0; t < kT; ++t) store_rows(tg, out, N, ra, rb, t, acc[0][t], acc[1][t]);
        }
    } else {
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
                for (int t = 0; t < kT; ++t) red[wib][r][t] = acc[r][t];
            }
        }
        __syncthreads();  // split is uniform over the launch: every thread reaches this
        // The same sums in the same order in both modes.
        auto slices_sum = [&](int r, int t) {
            float v = red[wib][r][t];
            for (int j = 1; j < split; ++j) v += red[wib + j][r][t];
            return v;
        };
        if (slice == 0 && live && lane < kT) {
            store_rows(tg, out, N, ra, rb, lane, slices_sum(0, lane), slices_sum(1, lane));
        }
    }
    if (tg.ticket != nullptr) add_rmsnorm_last_block(tg, kT);  // uniform: every thread
}

// FOT_CUDA_GEMV_SPLIT, for benchmark comparisons: 1, 2, 4 or 8 warps per row pair for every
// K (1: session 9's kernel, the same bits); 0 / unset: from K (gemv_split). Read once.
int forced_split() {
    static const int forced = [] {
        const char* e = std::getenv("FOT_CUDA_GEMV_SPLIT");
        const std::string v = e ? e : "";
        if (v.empty() || v == "0") return 0;
        if (v == "1" || v == "2" || v == "4" || v == "8") return std::stoi(v);
        FOT_THROW("FOT_CUDA_GEMV_SPLIT='", v, "' is not 0 (default), 1, 2, 4 or 8");
    }();
    return forced;
}

template <typename W, typename X>
void launch_t(const Targets<W>& tg, int64_t pairs, const X* x, int64_t T, int64_t K, int split,
              cudaStream_t st) {
    if (pairs == 0) return;
    FOT_CHECK(pairs < (int64_t{1} << 30), "cuda gemv: ", 2 * pairs,
              " rows in one launch (the kernel indexes rows in 32 bits)");
    const int64_t per_block = kWarps / split;
    const unsigned blocks = static_cast<unsigned>((pairs + per_block - 1) / per_block);
    switch (T) {
        case 1:
            launch_pdl(gemv_kernel<W, X, 1>, blocks, kThreads, 0, st, tg, x, K, split);
            break;
        case 2:
            launch_pdl(gemv_kernel<W, X, 2>, blocks, kThreads, 0, st, tg, x, K, split);
            break;
        case 3:
            launch_pdl(gemv_kernel<W, X, 3>, blocks, kThreads, 0, st, tg, x, K, split);
            break;
        default:
            launch_pdl(gemv_kernel<W, X, 4>, blocks, kThreads, 0, st, tg, x, K, split);
            break;
    }
}

// Runs body.template operator()<W>(x as const X*) for w_dtype and x_dtype (f32 or w's).
template <typename F>
void dispatch_gemv(DType x_dtype, DType w_dtype, const void* x, F&& body) {
    dispatch_float_dtype(w_dtype, "cuda gemv weights", [&](auto* tag) {
        using W = std::remove_pointer_t<decltype(tag)>;
        if (x_dtype == DType::kF32) {
            body(tag, static_cast<const float*>(x));
        } else {
            body(tag, static_cast<const W*>(x));
        }
    });
}

}  // namespace

bool gemv_supported(const void* x, DType x_dtype, const void* w, DType w_dtype, int64_t T,
                    int64_t K) {
    const int64_t esz = static_cast<int64_t>(dtype_size(w_dtype));
    return (x_dtype == DType::kF32 || x_dtype == w_dtype) && T >= 1 && T <= kGemvMaxT &&
           reinterpret_cast<uintptr_t>(w) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
           (K * esz) % 16 == 0 && K % 4 == 0 && K < (int64_t{1} << 28) &&
           (w_dtype == DType::kF32 || w_dtype == DType::kBF16 || w_dtype == DType::kF16);
}

int gemv_split(DType w_dtype, int64_t K) {
    if (const int f = forced_split()) return f;
    const int64_t chunks = K * static_cast<int64_t>(dtype_size(w_dtype)) / 16;
    int split = 1;  // about 4 chunks per lane and row: one round of loads in flight
    while (split < kWarps && chunks > 4 * 32 * split) split *= 2;
    return split;
}

void gemv(float* out, const void* x, DType x_dtype, const void* w, DType w_dtype, int64_t T,
          int64_t N, int64_t K, void* stream) {
    const GemvTarget t{out, w, N};
    gemv_group(&t, 1, x, x_dtype, w_dtype, T, K, stream);
}

void gemv_group(const GemvTarget* targets, int n, const void* x, DType x_dtype, DType w_dtype,
                int64_t T, int64_t K, void* stream) {
    FOT_CHECK(n >= 1 && n <= kGemvMaxGroup, "cuda gemv: ", n, " matrices in one launch (1 .. ",
              kGemvMaxGroup, ")");
    for (int i = 0; i < n; ++i) {
        FOT_CHECK(gemv_supported(x, x_dtype, targets[i].w, w_dtype, T, K),
                  "cuda gemv: unsupported shape, alignment or input type (T ", T, ", K ", K, ", x ",
                  dtype_name(x_dtype), ", w ", dtype_name(w_dtype), ")");
        FOT_CHECK(targets[i].N >= 0, "cuda gemv: negative N");
    }
    const int split = gemv_split(w_dtype, K);
    dispatch_gemv(x_dtype, w_dtype, x, [&](auto* tag, auto* xt) {
        using W = std::remove_pointer_t<decltype(tag)>;
        Targets<W> tg{};
        tg.n = n;
        int64_t rows = 0;  // the launch's rows, each matrix starting on a warp boundary
        for (int i = 0; i < n; ++i) {
            tg.out[i] = targets[i].out;
            tg.w[i] = static_cast<const W*>(targets[i].w);
            tg.N[i] = targets[i].N;
            tg.first[i] = rows;
            rows += (targets[i].N + kRowsPerWarp - 1) / kRowsPerWarp * kRowsPerWarp;
        }
        launch_t<W>(tg, rows / kRowsPerWarp, xt, T, K, split, as_stream(stream));
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

void gemv_add_rmsnorm(float* proj, void* xn, DType xn_dtype, float* x, const float* norm_w,
                      float eps, const void* a, DType a_dtype, const void* w, DType w_dtype,
                      int64_t T, int64_t C, int64_t K, unsigned* ticket, void* stream) {
    FOT_CHECK(gemv_supported(a, a_dtype, w, w_dtype, T, K) && C >= 1,
              "cuda gemv_add_rmsnorm: unsupported shape, alignment or input type (T ", T, ", K ", K,
              ", x ", dtype_name(a_dtype), ", w ", dtype_name(w_dtype), ")");
    FOT_CHECK(xn_dtype == DType::kF32 || xn_dtype == w_dtype, "cuda gemv_add_rmsnorm: output ",
              dtype_name(xn_dtype), " is neither f32 nor the weights' ", dtype_name(w_dtype));
    FOT_CHECK(ticket != nullptr, "cuda gemv_add_rmsnorm: no ticket");
    const int split = gemv_split(w_dtype, K);
    dispatch_gemv(a_dtype, w_dtype, a, [&](auto* tag, auto* at) {
        using W = std::remove_pointer_t<decltype(tag)>;
        Targets<W> tg{};
        tg.n = 1;
        tg.out[0] = proj;
        tg.w[0] = static_cast<const W*>(w);
        tg.N[0] = C;
        tg.ticket = ticket;
        tg.nx = x;
        tg.nw = norm_w;
        tg.eps = eps;
        if (xn_dtype == DType::kF32) {
            tg.xn_f = static_cast<float*>(xn);
        } else {
            tg.xn_w = static_cast<W*>(xn);
        }
        launch_t<W>(tg, (C + kRowsPerWarp - 1) / kRowsPerWarp, at, T, K, split, as_stream(stream));
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

void gemv_silu_mul(void* act, DType act_dtype, const void* x, DType x_dtype, const void* w_gate,
                   const void* w_up, DType w_dtype, int64_t T, int64_t I, int64_t K, void* stream) {
    FOT_CHECK(gemv_supported(x, x_dtype, w_gate, w_dtype, T, K) &&
                  gemv_supported(x, x_dtype, w_up, w_dtype, T, K) && I >= 0,
              "cuda gemv_silu_mul: unsupported shape, alignment or input type (T ", T, ", K ", K,
              ", x ", dtype_name(x_dtype), ", w ", dtype_name(w_dtype), ")");
    FOT_CHECK(act_dtype == DType::kF32 || act_dtype == w_dtype, "cuda gemv_silu_mul: output ",
              dtype_name(act_dtype), " is neither f32 nor the weights' ", dtype_name(w_dtype));
    const int split = gemv_split(w_dtype, K);
    dispatch_gemv(x_dtype, w_dtype, x, [&](auto* tag, auto* xt) {
        using W = std::remove_pointer_t<decltype(tag)>;
        Targets<W> tg{};
        tg.n = 1;
        tg.silu = 1;
        tg.w[0] = static_cast<const W*>(w_gate);
        tg.w[1] = static_cast<const W*>(w_up);
        tg.N[0] = I;
        if (act_dtype == DType::kF32) {
            tg.act_f = static_cast<float*>(act);
        } else {
            tg.act_w = static_cast<W*>(act);
        }
        launch_t<W>(tg, I, xt, T, K, split, as_stream(stream));
    });
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
