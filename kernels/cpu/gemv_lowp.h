// Decode-sized matmuls over bf16/f16 weights on AVX-512 or AVX2 (gemv_lowp.cpp): out[t, n] =
// sum_k x[t, k] * w[n, k] with w widened to f32 in registers and fp32 FMAs, for T <= 4 tokens.
// kernels::cpu::matmul takes it for such calls when the CPU has the instructions (checked at
// run time); the portable path widens each row into a buffer first.
#pragma once

#include <cstdint>

#include "runtime/core/dtype.h"

namespace fot::kernels::cpu {

constexpr int64_t kGemvLowpMaxT = 4;

enum class GemvIsa { kNone, kAvx2, kAvx512 };

// The instruction set gemv_lowp uses on this CPU: AVX-512F, else AVX2 + FMA + F16C, else none.
// FOT_CPU_AVX512=0 stops at AVX2.
GemvIsa gemv_lowp_isa();
// Whether this CPU can run the kernels of `isa` (tests run both where they can).
bool gemv_lowp_isa_available(GemvIsa isa);

// The matmul above with the kernels of `isa`; false (nothing done) for other dtypes, T outside
// [1, kGemvLowpMaxT] or an isa this CPU lacks. x: T rows of K floats; w: N rows of K.
bool gemv_lowp(float* out, const float* x, const void* w, DType w_dtype, int64_t T, int64_t N,
               int64_t K, GemvIsa isa = gemv_lowp_isa());

// Single-threaded pieces of the decode attention over bf16 key/value rows (attention.cpp),
// for an isa this CPU has (not kNone):
// out[j] = sum_d q[d] * k_j[d] for the n rows k_j of D, in the sum order above (T = 1);
void dot_rows_bf16(float* out, const float* q, const uint16_t* k, int64_t n, int64_t D,
                   GemvIsa isa);
// o[d] += sum_j p[j] * v_j[d], per d one FMA per row j in order (the same bits at any width).
void axpy_rows_bf16(float* o, const float* p, const uint16_t* v, int64_t n, int64_t D, GemvIsa isa);

}  // namespace fot::kernels::cpu
