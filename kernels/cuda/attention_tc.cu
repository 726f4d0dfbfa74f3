// Tensor-core flash attention for the `fast` precision (runtime/core/precision.h): folds bf16
// keys/values [H, *, D] into the fp32 partials [H, T, D + 2] (o, m, l) exactly as the fp32
// kernels in attention.cu do, so merges across key splits and ranks are unchanged.
//
// One block = 128 queries of one head (4 warps x 2 m-tiles of 16 rows; 64 queries and one
// m-tile per warp for T <= 64 or FOT_CUDA_ATTN_MT=1) over one key split; keys and values
// stream through shared memory in tiles of 64 rows, double-buffered with cp.async (the next
// tile loads while this one computes). Per tile and warp:
//   S = Q K^T   mma.m16n8k16 (bf16 in, fp32 accumulate); each K fragment (ldmatrix from
//               [key][d] rows) feeds both m-tiles, so shared-memory reads per mma and the
//               block's L2 reads per FLOP are half those of one m-tile per warp. Q's A
//               fragments are re-read from shared memory per tile with two m-tiles (kept in
//               registers with one)
//   softmax     fp32 running max / sum per row (quad shuffles), masked only on tiles that cross
//               the causal diagonal or the end of the split; a warp skips a tile none of its
//               rows can see
//   O += P V    P's fp32 accumulators become the bf16 A fragments in registers (the C layout
//               of two n-tiles is the A layout of one k-step); V fragments by ldmatrix.trans
// Each row's arithmetic (k-step order of every score, tile order of the softmax, k order of
// P.V) does not depend on the m-tiles per warp: both layouts give the same bits. The scale
// must be positive (the softmax takes the max of the unscaled scores). With an output
// (attn_one_store_tc) the blocks start empty and write o / l instead of the partial.
// head_dim D is padded to DP (16, 32, 64, 112 or 128) inside shared memory only: pad columns
// are zeroed once, and cp.async copies D elements per row (16-, 8- or 4-byte pieces,
// whichever the row size allows), so D = 100 stores are read in place. Shared-memory rows
// are DP + 8 elements (a 16-byte skew) so ldmatrix reads are bank-conflict free.
// The warp-level instructions come from mma.cuh (emulated exactly in kernels/cuda/emu).
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/attention_tc_kernel.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/ops.h"

namespace fot::kernels::cuda {
namespace {

using namespace attn_tc;

template <int DP, int MT, int NT>
void launch(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
            int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int D, float scale,
            int64_t causal_offset, int64_t splits, float* scratch, int chunk, TcOut out,
            cudaStream_t stream) {
    using Sh = TcShape<DP, MT>;
    FOT_CUDA_CHECK(cudaFuncSetAttribute(attn_tc_kernel<DP, MT, NT>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(Sh::kSmemBytes)));
    const dim3 grid(static_cast<unsigned>((T + Sh::kQ - 1) / Sh::kQ), static_cast<unsigned>(H),
                    static_cast<unsigned>(splits));
    attn_tc_kernel<DP, MT, NT><<<grid, kTcThreads, Sh::kSmemBytes, stream>>>(
        part, q, q_stride, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v),
        kv_head_stride, H, T, S, D, scale, causal_offset, splits, scratch, chunk, out);
}

// Instances: m-tiles per warp (1, 2) x n-tiles of O. Head dims 97-104 (LongLLaMA's 100) take
// 13 n-tiles at DP 112: the 14th would hold pad columns only.
template <int DP>
void launch_mt(int m_tiles, float* part, const float* q, int64_t q_stride, const void* k,
               const void* v, int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int D,
               float scale, int64_t causal_offset, int64_t splits, float* scratch, int chunk,
               TcOut out, cudaStream_t stream) {
    auto go = [&](auto mt, auto nt) {
        launch<DP, decltype(mt)::value, decltype(nt)::value>(
            part, q, q_stride, k, v, kv_head_stride, H, T, S, D, scale, causal_offset, splits,
            scratch, chunk, out, stream);
    };
    using One = std::integral_constant<int, 1>;
    using Two = std::integral_constant<int, 2>;
    using Full = std::integral_constant<int, DP / 8>;
    using Less = std::integral_constant<int, DP / 8 - 1>;
    if constexpr (DP == 112) {
        if (D <= DP - 8) {
            m_tiles == 1 ? go(One{}, Less{}) : go(Two{}, Less{});
            return;
        }
    }
    if constexpr (DP >= 112) {
        go(One{}, Full{});  // see attn_tc_m_tiles: two m-tiles with 14 or 16 n-tiles spill
    } else {
        m_tiles == 1 ? go(One{}, Full{}) : go(Two{}, Full{});
    }
}

// FOT_CUDA_ATTN_MT, for benchmark comparisons: 1 = one m-tile per warp (64-query blocks,
// session 9's layout), 2 = two (128-query blocks; head dims <= 104 only); 0 / unset:
// attn_tc_m_tiles's choice. With one key split, the same bits.
int forced_m_tiles() {
    static const int forced = [] {
        const char* e = std::getenv("FOT_CUDA_ATTN_MT");
        const std::string val = e ? e : "";
        if (val.empty() || val == "0") return 0;
        if (val == "1" || val == "2") return std::stoi(val);
        FOT_THROW("FOT_CUDA_ATTN_MT='", val, "' is not 0 (default), 1 or 2");
    }();
    return forced;
}

// Bytes per cp.async for rows of D bf16 at a head stride of kv_head_stride elements from
// k/v: the largest of 16, 8, 4 that every row start is aligned to; 0 when none is.
int copy_chunk(const void* k, const void* v, int64_t kv_head_stride, int64_t D) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v);
    for (int chunk : {16, 8, 4}) {
        if (addr % chunk == 0 && (D * 2) % chunk == 0 && (kv_head_stride * 2) % chunk == 0)
            return chunk;
    }
    return 0;
}

}  // namespace

bool attn_accumulate_tc_supported(const void* k, const void* v, DType kv_dtype,
                                  int64_t kv_head_stride, int64_t D, float scale) {
    return kv_dtype == DType::kBF16 && D >= 1 && D <= kMaxHeadDim &&
           copy_chunk(k, v, kv_head_stride, D) != 0 && scale > 0.f &&
           scale * 1.4426950408889634f < __builtin_huge_valf();
}

bool wgmma_device() {
    static const bool cc90 = [] {
        int dev = 0, major = 0, minor = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
            cudaGetLastError();  // no device: nothing to launch anyway
            return false;
        }
        return major == 9 && minor == 0;
    }();
    return cc90;
}

bool attn_tc_wgmma_supported(int64_t D) {
    return ((D > 32 && D <= 104) || (D > 112 && D <= 128)) && wgmma_device();
}

namespace {
std::atomic<int> g_wgmma_override{-1};  // set_attn_tc_wgmma; -1: FOT_CUDA_ATTN_WGMMA decides
}  // namespace

void set_attn_tc_wgmma(int on) {
    FOT_CHECK(on >= -1 && on <= 1, "set_attn_tc_wgmma: ", on, " is not -1, 0 or 1");
    g_wgmma_override = on;
}

bool attn_tc_wgmma_default(int64_t D) {
    static const bool env_on = [] {
        const char* e = std::getenv("FOT_CUDA_ATTN_WGMMA");
        const std::string val = e ? e : "";
        FOT_CHECK(val.empty() || val == "0" || val == "1", "FOT_CUDA_ATTN_WGMMA='", val,
                  "' is not 0 (default) or 1");
        return val == "1";
    }();
    const int o = g_wgmma_override;
    return (o >= 0 ? o == 1 : env_on) && forced_m_tiles() == 0 && attn_tc_wgmma_supported(D);
}

int attn_tc_m_tiles(int64_t T, int64_t D) {
    const int forced = forced_m_tiles();
    if (forced != 0) return forced;
    if (attn_tc_wgmma_default(D)) return 2;  // 128-query blocks (two warpgroups)
    // A 128-query block over <= 64 queries would idle half its warps; at head dims above 104
    // two m-tiles' accumulators (2 x 14 or 2 x 16 n-tiles x 4 for O, 2 x 8 x 4 for S) leave
    // ptxas too few registers (it spills 36-92 bytes). LongLLaMA's head dims are 100 and 128.
    return T <= 64 || D > 104 ? 1 : 2;
}

namespace {
void run_tc(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
            int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D, float scale,
            int64_t causal_offset, int64_t splits, float* scratch, void* stream, int m_tiles,
            TcOut out) {
    const int chunk = copy_chunk(k, v, kv_head_stride, D);
    FOT_CHECK(chunk != 0 && D >= 1 && D <= kMaxHeadDim,
              "cuda tensor-core attention: unsupported head_dim ", D, " or alignment");
    FOT_CHECK(m_tiles >= kAttnTcWgmma && m_tiles <= 2, "cuda tensor-core attention: m_tiles ",
              m_tiles, " is not 0 (default), 1, 2 or kAttnTcWgmma");
    FOT_CHECK(S < (int64_t{1} << 31), "cuda tensor-core attention: ", S,
              " keys in one call (the kernel counts a split's keys in 32 bits)");
    FOT_CHECK(scale > 0.f && scale * 1.4426950408889634f < __builtin_huge_valf(),
              "cuda tensor-core attention: scale ", scale,
              " is not positive and finite (attn_accumulate_tc_supported)");
    cudaStream_t st = as_stream(stream);
    const int d = static_cast<int>(D);
    if (m_tiles == kAttnTcWgmma || (m_tiles == 0 && attn_tc_wgmma_default(D))) {
        FOT_CHECK(attn_tc_wgmma_supported(D), "cuda tensor-core attention: the wgmma kernel takes ",
                  "head dims 33-104 and 113-128 on a compute capability 9.0 device, not ", D);
        FOT_CHECK(launch_wgmma(part, q, q_stride, k, v, kv_head_stride, H, T, S, d, scale,
                               causal_offset, splits, scratch, chunk, out, st),
                  "cuda tensor-core attention: no wgmma instance for head dim ", D);
        FOT_CUDA_CHECK(cudaGetLastError());
        return;
    }
    if (m_tiles == 0) m_tiles = attn_tc_m_tiles(T, D);
    auto go = [&](auto dp) {
        launch_mt<decltype(dp)::value>(m_tiles, part, q, q_stride, k, v, kv_head_stride, H, T, S, d,
                                       scale, causal_offset, splits, scratch, chunk, out, st);
    };
    if (D <= 16) {
        go(std::integral_constant<int, 16>{});
    } else if (D <= 32) {
        go(std::integral_constant<int, 32>{});
    } else if (D <= 64) {
        go(std::integral_constant<int, 64>{});
    } else if (D <= 112) {
        go(std::integral_constant<int, 112>{});
    } else {
        go(std::integral_constant<int, 128>{});
    }
    FOT_CUDA_CHECK(cudaGetLastError());
}
}  // namespace

void attn_accumulate_tc(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
                        int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int64_t D,
                        float scale, int64_t causal_offset, int64_t splits, float* scratch,
                        void* stream, int m_tiles) {
    if (S <= 0 || T <= 0 || H <= 0) return;
    run_tc(part, q, q_stride, k, v, kv_head_stride, H, T, S, D, scale, causal_offset, splits,
           scratch, stream, m_tiles, TcOut{nullptr, 0, 0});
}

void attn_one_store_tc(void* out, DType out_dtype, int64_t out_stride, const float* q,
                       int64_t q_stride, const void* k, const void* v, int64_t kv_head_stride,
                       int64_t H, int64_t T, int64_t S, int64_t D, float scale,
                       int64_t causal_offset, void* stream, int m_tiles) {
    FOT_CHECK(out != nullptr && S >= 1 && T >= 1 && H >= 1,
              "cuda tensor-core attention: attn_one_store_tc needs an output and >= 1 key, "
              "query and head (S ",
              S, ", T ", T, ", H ", H, ")");
    const int kind = out_dtype == DType::kF32    ? 0
                     : out_dtype == DType::kBF16 ? 1
                     : out_dtype == DType::kF16  ? 2
                                                 : -1;
    FOT_CHECK(kind >= 0, "cuda tensor-core attention: output dtype ", dtype_name(out_dtype),
              " is not f32, bf16 or f16");
    run_tc(nullptr, q, q_stride, k, v, kv_head_stride, H, T, S, D, scale, causal_offset, 1, nullptr,
           stream, m_tiles, TcOut{out, out_stride, kind});
}

}  // namespace fot::kernels::cuda
