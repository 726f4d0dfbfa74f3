// Device helpers shared by the .cu files: element conversions (bit-identical to
// runtime/core/dtype.h), warp/block reductions, dtype dispatch and launch-size helpers.
// Included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "runtime/core/dtype.h"
#include "runtime/core/status.h"

namespace fot::kernels::cuda {

constexpr float kNegInf = -__builtin_huge_valf();

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

// 2^x for softmax weights in the `fast` precision, which are rounded to bf16 right after:
// ex2.approx.ftz (about 2 ulp; denormal inputs and results are zero), one MUFU.EX2. exp2f
// compiles to ex2.approx without .ftz, which ptxas wraps in a compare and two predicated
// multiplies to keep denormals: three more instructions per score in the attention kernel's
// softmax, for weights below 2^-126 of the row's largest (nothing at bf16 and fp32 sums).
// The emulator: std::exp2 with the same flush.
__device__ __forceinline__ float fast_exp2(float x) {
#if defined(__CUDACC__)
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    const float y = std::exp2(std::fabs(x) < 1.17549435e-38f ? 0.f : x);
    return y < 1.17549435e-38f ? 0.f : y;
#endif
}

// `T* name` = the block's dynamic shared memory, in kernels that live in headers (preprocess.py
// rewrites `extern __shared__` only in the .cu file it is given).
#if defined(__CUDACC__)
#define FOT_DYNAMIC_SMEM(T, name) extern __shared__ T name[]
#else
#define FOT_DYNAMIC_SMEM(T, name) T* name = ::emu::dynamic_smem<T>()
#endif

// ---- element conversions ---------------------------------------------------------------------
__device__ __forceinline__ float to_f32(float x) {
    return x;
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) {
    return __bfloat162float(x);
}
__device__ __forceinline__ float to_f32(__half x) {
    return __half2float(x);
}

// f32 -> bf16 bits, round to nearest even, NaN -> quiet NaN keeping the sign (fot::f32_to_bf16).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
    uint32_t bits = __float_as_uint(f);
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
        return static_cast<uint16_t>((bits >> 16) | 0x0040u);
    }
    const uint32_t lsb = (bits >> 16) & 1u;
    bits += 0x7fffu + lsb;
    return static_cast<uint16_t>(bits >> 16);
}

template <typename T>
__device__ __forceinline__ T from_f32(float f);
template <>
__device__ __forceinline__ float from_f32<float>(float f) {
    return f;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float f) {
    return __nv_bfloat16_raw{f32_to_bf16_bits(f)};
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float f) {
    return __float2half_rn(f);
}

// silu(g) * u: the one formula of silu_mul and of the GEMV's fused gate|up epilogue. Written
// without contractible pairs (nvcc could fuse the add into expf's last multiply differently
// in each kernel, as it did with RoPE's rotation), so both give the same bits.
__device__ __forceinline__ float silu_times(float g, float u) {
    return __fmul_rn(g / __fadd_rn(1.0f, expf(-g)), u);
}

// ---- reductions ------------------------------------------------------------------------------
// Butterfly reductions: every lane ends with the same bits (each step adds the same two
// operands in every lane, and float addition is commutative).
template <int kWidth = 32>
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = kWidth / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
template <int kWidth = 32, typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = kWidth / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Block-wide reductions for blockDim.x a multiple of 32 (<= 1024); `red` holds >= 32 values.
// The result is returned to every thread. Contains __syncthreads: call from all threads.
template <typename T>
__device__ T block_sum(T v, T* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // red may still be read from a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    T r = lane < nw ? red[lane] : T(0);
    return warp_sum(r);
}
__device__ __forceinline__ float block_max(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = lane < nw ? red[lane] : kNegInf;
    return warp_max(r);
}

// One row of RMSNorm by the whole block: with kAdd, x += r first (written back); then
// out = w * (x * inv), inv = 1 / sqrt(mean(x^2) + eps). The one arithmetic of rmsnorm_kernel
// and of the GEMV's add + RMSNorm epilogue: the same bits for the same blockDim. The sum of
// squares is an explicit fmaf, so nvcc cannot contract it differently in the two kernels (as
// it did with RoPE's rotation). r is read through L2 (__ldcg): in the GEMV's last block it was
// written by other blocks of the running grid. Contains __syncthreads: call from all threads.
template <typename O, bool kAdd>
__device__ __forceinline__ void rmsnorm_row(O* out, float* x, const float* r, const float* w,
                                            int64_t C, float eps, float* red) {
    float ss = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = x[c];
        if constexpr (kAdd) {
            v = v + __ldcg(r + c);
            x[c] = v;  // read back below by this same thread
        }
        ss = fmaf(v, v, ss);
    }
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) out[c] = from_f32<O>(w[c] * (x[c] * inv));
}

// ---- launch helpers --------------------------------------------------------------------------
inline int grid_for(int64_t n, int threads, int64_t max_blocks = 65535 * 16) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > max_blocks) b = max_blocks;
    return static_cast<int>(b);
}

inline cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}

// Calls f with a null pointer of the C++ element type of `t` (f32, bf16, f16).
template <typename F>
void dispatch_float_dtype(DType t, const char* what, F&& f) {
    switch (t) {
        case DType::kF32:
            f(static_cast<float*>(nullptr));
            break;
        case DType::kBF16:
            f(static_cast<__nv_bfloat16*>(nullptr));
            break;
        case DType::kF16:
            f(static_cast<__half*>(nullptr));
            break;
        default:
            FOT_THROW(what, ": dtype ", dtype_name(t), " is not supported (f32, bf16, f16)");
    }
}

}  // namespace fot::kernels::cuda
