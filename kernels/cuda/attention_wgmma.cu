// The tensor-core attention kernel on wgmma (attention_tc_kernel.cuh with kWg), and a probe
// of the wgmma wrappers' layouts. Compiled for sm_90a alone (kernels/cuda/CMakeLists.txt):
// wgmma exists only there, and a cubin for sm_90a runs only on compute capability 9.0, which
// attn_tc_wgmma_supported checks before anything here is launched.
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "kernels/cuda/attention_tc_kernel.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/wgmma.cuh"

namespace fot::kernels::cuda {
namespace {

using namespace attn_tc;

template <int DP, int NT>
void launch_wg(float* part, const float* q, int64_t q_stride, const void* k, const void* v,
               int64_t kv_head_stride, int64_t H, int64_t T, int64_t S, int D, float scale,
               int64_t causal_offset, int64_t splits, float* scratch, int chunk, TcOut out,
               cudaStream_t stream) {
    using Sh = TcShape<DP, 1, true>;
    FOT_CUDA_CHECK(cudaFuncSetAttribute(attn_tc_kernel<DP, 1, NT, true>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(Sh::kSmemBytes)));
    const dim3 grid(static_cast<unsigned>((T + Sh::kQ - 1) / Sh::kQ), static_cast<unsigned>(H),
                    static_cast<unsigned>(splits));
    attn_tc_kernel<DP, 1, NT, true><<<grid, kWgThreads, Sh::kSmemBytes, stream>>>(
        part, q, q_stride, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v),
        kv_head_stride, H, T, S, D, scale, causal_offset, splits, scratch, chunk, out);
}

// B of the probe: K-major [N][K] (rows n) or MN-major [K][N] (rows k), stored as the attention
// kernel stores its K and V tiles (core_offset).
template <int N, bool kTrans>
__global__ void __launch_bounds__(128)
    wgmma_probe_kernel(float* out, const uint16_t* __restrict__ a, const uint16_t* __restrict__ b,
                       int K) {
    FOT_DYNAMIC_SMEM(uint4, smem_probe);
    uint16_t* Bs = reinterpret_cast<uint16_t*>(smem_probe);
    const int tid = static_cast<int>(threadIdx.x);
    const int rows = kTrans ? K : N, cols = kTrans ? N : K;
    for (int i = tid; i < rows * cols; i += 128)
        Bs[core_offset(i / cols, i % cols, cols / 8)] = b[i];
    wg::fence_proxy_async();
    __syncthreads();
    const int lane = tid & 31, g = lane >> 2, c4 = lane & 3, r0 = 16 * (tid >> 5) + g;
    // Every A fragment before the first wgmma: registers a wgmma reads stay unchanged until
    // its wait.
    uint32_t af[8][4];
    auto pair = [&](int r, int kk) {
        return static_cast<uint32_t>(a[r * K + kk]) |
               (static_cast<uint32_t>(a[r * K + kk + 1]) << 16);
    };
    // Loops of 8 with a guard, unrolled: af stays in registers (indexed by constants).
    const int nks = K / 16;
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) {
        if (ks >= nks) break;
        const int k0 = 16 * ks + 2 * c4;
        af[ks][0] = pair(r0, k0);
        af[ks][1] = pair(r0 + 8, k0);
        af[ks][2] = pair(r0, k0 + 8);
        af[ks][3] = pair(r0 + 8, k0 + 8);
    }
    float d[N / 2];
    wg::fence();
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) {
        if (ks >= nks) break;
        const uint16_t* start =
            Bs + (kTrans ? core_offset(16 * ks, 0, cols / 8) : core_offset(0, 16 * ks, cols / 8));
        const uint32_t lbo = kTrans ? cols / 8 * 128 : 128, sbo = kTrans ? 128 : cols / 8 * 128;
        wg::mma_rs<N, kTrans>(d, af[ks], wg::desc(start, lbo, sbo), ks > 0);
    }
    wg::commit();
    wg::wait<0>();
    wg::fence_operands(d);
    for (int i = 0; i < N / 2; ++i) {
        const int row = r0 + ((i & 2) ? 8 : 0), col = 8 * (i / 4) + 2 * c4 + (i & 1);
        out[row * N + col] = d[i];
    }
}

template <int N>
void launch_probe(float* out, const void* a, const void* b, int K, bool mn_major, cudaStream_t st) {
    const size_t smem = sizeof(uint16_t) * static_cast<size_t>(N) * static_cast<size_t>(K);
    const auto* a16 = static_cast<const uint16_t*>(a);
    const auto* b16 = static_cast<const uint16_t*>(b);
    if (mn_major) {
        wgmma_probe_kernel<N, true><<<1, 128, smem, st>>>(out, a16, b16, K);
    } else {
        wgmma_probe_kernel<N, false><<<1, 128, smem, st>>>(out, a16, b16, K);
    }
}

}  // namespace

bool attn_tc::launch_wgmma(float* part, const float* q, int64_t q_stride, const void* k,
                           const void* v, int64_t kv_head_stride, int64_t H, int64_t T, int64_t S,
                           int D, float scale, int64_t causal_offset, int64_t splits,
                           float* scratch, int chunk, TcOut out, cudaStream_t stream) {
    // n of O's wgmma = 8 x n-tiles: 64 (head dims 33-64), 104 (65-104), 128 (113-128).
    if (D > 32 && D <= 64) {
        launch_wg<64, 8>(part, q, q_stride, k, v, kv_head_stride, H, T, S, D, scale, causal_offset,
                         splits, scratch, chunk, out, stream);
    } else if (D > 64 && D <= 104) {
        launch_wg<112, 13>(part, q, q_stride, k, v, kv_head_stride, H, T, S, D, scale,
                           causal_offset, splits, scratch, chunk, out, stream);
    } else if (D > 112 && D <= 128) {
        launch_wg<128, 16>(part, q, q_stride, k, v, kv_head_stride, H, T, S, D, scale,
                           causal_offset, splits, scratch, chunk, out, stream);
    } else {
        return false;
    }
    return true;
}

void wgmma_probe(float* out, const void* a, const void* b, int N, int K, bool b_mn_major,
                 void* stream) {
    FOT_CHECK(K >= 16 && K <= 128 && K % 16 == 0, "wgmma_probe: K ", K,
              " is not a multiple of 16 in [16, 128]");
    FOT_CHECK(wgmma_device(), "wgmma_probe: the device is not compute capability 9.0");
    cudaStream_t st = as_stream(stream);
    if (N == 64) {
        launch_probe<64>(out, a, b, K, b_mn_major, st);
    } else if (N == 104) {
        launch_probe<104>(out, a, b, K, b_mn_major, st);
    } else if (N == 128) {
        launch_probe<128>(out, a, b, K, b_mn_major, st);
    } else {
        FOT_THROW("wgmma_probe: N ", N, " is not 64, 104 or 128");
    }
    FOT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fot::kernels::cuda
