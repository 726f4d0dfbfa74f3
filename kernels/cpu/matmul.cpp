// GEMM against torch Linear weights (N, K). f32 weights go straight to BLAS. bf16/f16
// weights are widened to f32 one tile of rows at a time (for many tokens) or row by row
// inside a dot-product loop (for few tokens, i.e. decode), so no full f32 copy exists.
//
// Threading: OpenMP owns the cores. Each OpenMP thread takes a slice of the N output columns
// and calls a single-threaded BLAS on it (OpenBLAS is set to 1 thread by the CPU backend):
// two thread pools spinning against each other (OpenMP + OpenBLAS pthreads) cost up to 3x
// on small machines.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/gemv_lowp.h"
#include "kernels/cpu/ops.h"

namespace fot::kernels::cpu {
namespace {

constexpr int64_t kSmallT = 4;      // at or below: fused convert + dot (memory-bound decode)
constexpr int64_t kTileRows = 256;  // rows of w widened per sgemm otherwise

// Few tokens (decode): memory-bound, so stream every weight row once and dot it with each
// token; f32 rows are read in place, bf16/f16 rows are widened into a per-thread buffer.
void matmul_small(float* out, const float* x, const void* w, DType w_dtype, int64_t T, int64_t N,
                  int64_t K) {
    const size_t esz = dtype_size(w_dtype);
#pragma omp parallel if (T * N * K > kParallelMinWork)
    {
        std::vector<float> buf(w_dtype == DType::kF32 ? 0 : static_cast<size_t>(K));
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; ++n) {
            const char* src = static_cast<const char*>(w) + static_cast<size_t>(n * K) * esz;
            const float* row = reinterpret_cast<const float*>(src);
            if (w_dtype != DType::kF32) {
                convert_to_f32(src, w_dtype, buf.data(), K);
                row = buf.data();
            }
            for (int64_t t = 0; t < T; ++t) {
                const float* xr = x + t * K;
                float acc = 0.f;
#pragma omp simd reduction(+ : acc)
                for (int64_t k = 0; k < K; ++k) acc += xr[k] * row[k];
                out[t * N + n] = acc;
            }
        }
    }
}

void matmul_lowp_tiled(float* out, const float* x, const void* w, DType w_dtype, int64_t T,
                       int64_t N, int64_t K) {
    const size_t esz = dtype_size(w_dtype);
    const int64_t tiles = (N + kTileRows - 1) / kTileRows;
#pragma omp parallel if (T * N * K > kParallelMinWork)
    {
        std::vector<float> tile(static_cast<size_t>(std::min(N, kTileRows) * K));
#pragma omp for schedule(dynamic, 1)
        for (int64_t ti = 0; ti < tiles; ++ti) {
            const int64_t n0 = ti * kTileRows, nt = std::min(kTileRows, N - n0);
            convert_to_f32(static_cast<const char*>(w) + static_cast<size_t>(n0 * K) * esz, w_dtype,
                           tile.data(), static_cast<size_t>(nt * K));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T),
                        static_cast<int>(nt), static_cast<int>(K), 1.0f, x, static_cast<int>(K),
                        tile.data(), static_cast<int>(K), 0.0f, out + n0, static_cast<int>(N));
        }
    }
}

// f32 weights: each thread multiplies by its own contiguous slice of weight rows.
void matmul_f32(float* out, const float* x, const float* w, int64_t T, int64_t N, int64_t K) {
#pragma omp parallel if (T * N * K > kParallelMinWork)
    {
        const int64_t nth = omp_get_num_threads(), me = omp_get_thread_num();
        // Slices of a multiple of 16 rows keep BLAS on its fast paths.
        const int64_t per = ((N + nth - 1) / nth + 15) / 16 * 16;
        const int64_t n0 = std::min(N, me * per), n1 = std::min(N, n0 + per);
        if (n1 > n0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T),
                        static_cast<int>(n1 - n0), static_cast<int>(K), 1.0f, x,
                        static_cast<int>(K), w + n0 * K, static_cast<int>(K), 0.0f, out + n0,
                        static_cast<int>(N));
        }
    }
}

}  // namespace

void round_to_dtype(float* dst, const float* src, int64_t n, DType dtype) {
    if (dtype == DType::kBF16) {
#pragma omp parallel for schedule(static) if (n > kParallelMinWork)
        for (int64_t i = 0; i < n; ++i) dst[i] = round_bf16(src[i]);
    } else if (dtype == DType::kF16) {
#pragma omp parallel for schedule(static) if (n > kParallelMinWork)
        for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(f32_to_f16(src[i]));
    } else if (dst != src) {
        std::copy(src, src + n, dst);
    }
}

void matmul(float* out, const float* x, const void* w, DType w_dtype, int64_t T, int64_t N,
            int64_t K) {
    if (T == 0 || N == 0) return;
    if (T <= kSmallT) {
        // bf16/f16 rows widened in registers where the CPU has AVX2 or AVX-512 (one pass).
        if (gemv_lowp(out, x, w, w_dtype, T, N, K)) return;
        matmul_small(out, x, w, w_dtype, T, N, K);
    } else if (w_dtype == DType::kF32) {
        matmul_f32(out, x, static_cast<const float*>(w), T, N, K);
    } else {
        matmul_lowp_tiled(out, x, w, w_dtype, T, N, K);
    }
}

}  // namespace fot::kernels::cpu
