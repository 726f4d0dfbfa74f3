#include "runtime/backend/cpu_backend.h"

#include <omp.h>

#include <cstring>

#include "kernels/cpu/ops.h"
#include "runtime/core/status.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace fot {
namespace k = kernels::cpu;

namespace {

void check_cpu(const TensorView& v, const char* what) {
    FOT_CHECK(v.device.kind == DeviceKind::kCpu, "cpu backend: ", what, " is not host memory");
}

void check_f32(const TensorView& v, const char* what) {
    check_cpu(v, what);
    FOT_CHECK(v.dtype == DType::kF32, "cpu backend: ", what, " must be f32, is ",
              dtype_name(v.dtype));
}

void check_float(const TensorView& v, const char* what) {
    check_cpu(v, what);
    FOT_CHECK(v.dtype == DType::kF32 || v.dtype == DType::kBF16 || v.dtype == DType::kF16,
              "cpu backend: ", what, " must be f32, bf16 or f16, is ", dtype_name(v.dtype));
}

int64_t rows_of(const TensorView& v) {
    return v.shape.empty() ? 1 : v.shape[0];
}
int64_t row_width(const TensorView& v) {
    return v.shape.empty() ? 1 : v.numel() / v.shape[0];
}

}  // namespace

CpuBackend::CpuBackend(int threads) {
    // OpenMP owns the cores; BLAS runs single-threaded inside OpenMP slices (kernels/cpu/
    // matmul.cpp explains why).
    if (threads > 0) omp_set_num_threads(threads);
    openblas_set_num_threads(1);
}

Buffer CpuBackend::alloc(DType dtype, Shape shape) {
    return Buffer(dtype, std::move(shape));
}

Buffer CpuBackend::alloc_uninitialized(DType dtype, Shape shape) {
    return Buffer::uninitialized(dtype, std::move(shape));
}

void CpuBackend::upload(TensorView dst, const void* host_src, size_t bytes) {
    check_cpu(dst, "upload destination");
    FOT_ASSERT(bytes <= dst.nbytes());
    std::memcpy(dst.data, host_src, bytes);
}

void CpuBackend::download(void* host_dst, TensorView src, size_t bytes) {
    check_cpu(src, "download source");
    FOT_ASSERT(bytes <= src.nbytes());
    std::memcpy(host_dst, src.data, bytes);
}

void CpuBackend::copy_rows(TensorView dst, int64_t dst_row, TensorView src, int64_t rows) {
    check_cpu(dst, "copy destination");
    check_cpu(src, "copy source");
    FOT_ASSERT(dst.dtype == src.dtype && row_width(dst) == row_width(src));
    FOT_ASSERT(dst_row + rows <= rows_of(dst) && rows <= rows_of(src));
    const size_t row_bytes = static_cast<size_t>(row_width(src)) * dtype_size(src.dtype);
    std::memmove(static_cast<char*>(dst.data) + dst_row * row_bytes, src.data, rows * row_bytes);
}

void CpuBackend::embedding(TensorView out, const int32_t* host_ids, TensorView table,
                           int64_t row_begin) {
    check_f32(out, "embedding output");
    check_cpu(table, "embedding table");
    FOT_ASSERT(table.shape.size() == 2 && row_width(out) == table.shape[1]);
    k::embedding(out.as<float>(), host_ids, table.data, table.dtype, rows_of(out), table.shape[1],
                 row_begin, table.shape[0]);
}

DType CpuBackend::gemm_input_dtype(DType w_dtype) const {
    if (precision() != Precision::kFast) return DType::kF32;  // exact: x stays f32
    return w_dtype == DType::kF16 ? DType::kF16 : DType::kBF16;
}

float* CpuBackend::f32_staging(const TensorView& out) {
    if (out.dtype == DType::kF32) return out.as<float>();
    staging_.resize(static_cast<size_t>(out.numel()));
    return staging_.data();
}

void CpuBackend::store_staged(TensorView out) {
    if (out.dtype == DType::kF32) return;
    convert_from_f32(staging_.data(), out.data, out.dtype, static_cast<size_t>(out.numel()));
}

void CpuBackend::rmsnorm(TensorView out, TensorView x, TensorView w, float eps) {
    check_float(out, "rmsnorm output");
    check_f32(x, "rmsnorm input");
    check_f32(w, "rmsnorm weight");
    FOT_ASSERT(out.numel() == x.numel() && w.numel() == row_width(x));
    k::rmsnorm(f32_staging(out), x.as<float>(), w.as<float>(), rows_of(x), row_width(x), eps);
    store_staged(out);
}

// kBf16DotMinRows: decode-sized GEMMs stay on the widening GEMV: they are bound by reading
// the weights, which the dot-product instruction does not change.

kernels::cpu::Bf16DotKernel CpuBackend::fast_bf16_kernel() {
    return k::fast_bf16_dot_kernel();  // the policy and its measurements: matmul_bf16.cpp
}

void CpuBackend::matmul(TensorView out, TensorView x, TensorView w) {
    check_f32(out, "matmul output");
    check_float(x, "matmul input");
    check_cpu(w, "matmul weight");
    FOT_ASSERT(w.shape.size() == 2);
    FOT_CHECK(x.dtype == DType::kF32 || x.dtype == gemm_input_dtype(w.dtype),
              "cpu backend: matmul input is ", dtype_name(x.dtype), ", expected f32 or ",
              dtype_name(gemm_input_dtype(w.dtype)), " for ", dtype_name(w.dtype),
              " weights in this precision");
    const int64_t T = rows_of(x), K = row_width(x), N = w.shape[0];
    FOT_ASSERT(w.shape[1] == K && rows_of(out) == T && row_width(out) == N);
    const float* xp = x.as<float>();
    if (x.dtype != DType::kF32) {
        // Already rounded by its producer: widen (rounding it again below changes nothing).
        x_round_.resize(static_cast<size_t>(T * K));
        convert_to_f32(x.data, x.dtype, x_round_.data(), static_cast<size_t>(T * K));
        xp = x_round_.data();
    }
    if (precision() == Precision::kFast && w.dtype == DType::kBF16 && T > kBf16DotMinRows &&
        fast_bf16_kernel() != k::Bf16DotKernel::kEmulated) {
        // bf16 x bf16 on AMX tiles or the dot-product instruction; it rounds x itself.
        k::matmul_bf16_dot(out.as<float>(), xp, static_cast<const uint16_t*>(w.data), T, N, K,
                           fast_bf16_kernel());
        return;
    }
    const DType operand = w.dtype == DType::kF16 ? DType::kF16 : DType::kBF16;
    if (precision() == Precision::kFast && x.dtype != operand) {
        // bf16 GEMM operands (f16 for f16 weights), fp32 accumulation. An x already in the
        // operand type was widened exactly above: rounding it again would change no bit.
        x_round_.resize(static_cast<size_t>(T * K));
        k::round_to_dtype(x_round_.data(), xp, T * K, operand);
        xp = x_round_.data();
    }
    k::matmul(out.as<float>(), xp, w.data, w.dtype, T, N, K);
}

void CpuBackend::rope(TensorView x, int64_t H, int64_t D, int64_t first_pos, float theta) {
    check_f32(x, "rope input");
    FOT_ASSERT(row_width(x) >= H * D && D % 2 == 0);
    k::rope(x.as<float>(), rows_of(x), H, D, row_width(x), first_pos, theta);
}

void CpuBackend::silu_mul(TensorView out, TensorView gate, TensorView up) {
    check_float(out, "silu_mul output");
    check_f32(gate, "silu_mul gate");
    check_f32(up, "silu_mul up");
    FOT_ASSERT(out.numel() == gate.numel() && out.numel() == up.numel());
    k::silu_mul(f32_staging(out), gate.as<float>(), up.as<float>(), out.numel());
    store_staged(out);
}

void CpuBackend::add(TensorView out, TensorView a, TensorView b) {
    check_f32(out, "add output");
    FOT_ASSERT(out.numel() == a.numel() && out.numel() == b.numel());
    k::add(out.as<float>(), a.as<float>(), b.as<float>(), out.numel());
}

void CpuBackend::attn_partial_init(TensorView part) {
    check_f32(part, "attention partial");
    FOT_ASSERT(part.shape.size() == 3);
    k::attn_partial_init(part.as<float>(), part.shape[0], part.shape[1], part.shape[2] - 2);
}

void CpuBackend::attn_accumulate(TensorView part, TensorView q, TensorView kk, TensorView v,
                                 int64_t S, float scale, int64_t causal_offset) {
    check_f32(part, "attention partial");
    check_f32(q, "attention queries");
    check_cpu(kk, "attention keys");
    check_cpu(v, "attention values");
    FOT_ASSERT(part.shape.size() == 3 && kk.shape.size() == 3);
    const int64_t H = part.shape[0], T = part.shape[1], D = part.shape[2] - 2;
    FOT_ASSERT(kk.shape[0] == H && kk.shape[2] == D && S <= kk.shape[1]);
    FOT_ASSERT(kk.dtype == v.dtype && kk.shape == v.shape);
    FOT_ASSERT(rows_of(q) == T && row_width(q) >= H * D);
    k::attn_accumulate(part.as<float>(), q.as<float>(), row_width(q), kk.data, v.data, kk.dtype,
                       kk.shape[1] * D, H, T, S, D, scale, causal_offset,
                       precision() == Precision::kFast);
}

void CpuBackend::attn_partial_merge(TensorView out, TensorView parts) {
    check_f32(out, "attention partial");
    check_f32(parts, "attention partials");
    FOT_ASSERT(out.shape.size() == 3 && parts.shape.size() == 4);
    const int64_t R = parts.shape[0], H = out.shape[0], T = out.shape[1], D = out.shape[2] - 2;
    FOT_ASSERT(parts.shape[1] == H && parts.shape[2] == T && parts.shape[3] == D + 2);
    k::attn_partial_merge(out.as<float>(), parts.as<float>(), R, H, T, D);
}

void CpuBackend::attn_partial_finalize(TensorView out, TensorView part) {
    check_float(out, "attention output");
    check_f32(part, "attention partial");
    const int64_t H = part.shape[0], T = part.shape[1], D = part.shape[2] - 2;
    FOT_ASSERT(rows_of(out) == T && row_width(out) >= H * D);
    if (out.dtype == DType::kF32) {
        k::attn_partial_finalize(out.as<float>(), row_width(out), part.as<float>(), H, T, D);
        return;
    }
    staging_.resize(static_cast<size_t>(T * H * D));
    k::attn_partial_finalize(staging_.data(), H * D, part.as<float>(), H, T, D);
    const size_t esz = dtype_size(out.dtype);
    for (int64_t t = 0; t < T; ++t) {
        convert_from_f32(
            staging_.data() + t * H * D,
            static_cast<char*>(out.data) + static_cast<size_t>(t * row_width(out)) * esz, out.dtype,
            static_cast<size_t>(H * D));
    }
}

void CpuBackend::scatter_heads(TensorView store, int64_t at, TensorView x) {
    check_cpu(store, "key/value store");
    check_f32(x, "key/value rows");
    FOT_ASSERT(store.shape.size() == 3);
    const int64_t H = store.shape[0], D = store.shape[2], T = rows_of(x);
    FOT_ASSERT(at + T <= store.shape[1] && row_width(x) >= H * D);
    k::scatter_heads(store.data, store.dtype, store.shape[1] * D, at, x.as<float>(), row_width(x),
                     T, H, D);
}

}  // namespace fot

namespace fot {

void CpuBackend::logsoftmax_parts(TensorView parts, TensorView logits, const int32_t* host_targets,
                                  int64_t vocab_begin) {
    check_f32(parts, "log-softmax parts");
    check_f32(logits, "logits");
    const int64_t T = rows_of(logits);
    FOT_ASSERT(parts.numel() == 3 * T);
    k::logsoftmax_parts(parts.as<float>(), logits.as<float>(), T, row_width(logits), host_targets,
                        vocab_begin);
}

void CpuBackend::memory_topk(TensorView scores, TensorView rows, TensorView positions, TensorView q,
                             TensorView kk, TensorView row_pos, int64_t S, float scale) {
    check_f32(scores, "top-k scores");
    check_f32(q, "top-k queries");
    check_cpu(kk, "top-k keys");
    FOT_ASSERT(rows.dtype == DType::kI64 && positions.dtype == DType::kI64);
    FOT_ASSERT(row_pos.dtype == DType::kI64 && row_pos.numel() >= S);
    const int64_t H = scores.shape[0], T = scores.shape[1], K = scores.shape[2];
    const int64_t D = kk.shape[2];
    FOT_ASSERT(kk.shape[0] == H && S <= kk.shape[1] && rows_of(q) == T);
    FOT_ASSERT(rows.numel() == scores.numel() && positions.numel() == scores.numel());
    k::memory_topk(scores.as<float>(), rows.as<int64_t>(), positions.as<int64_t>(), q.as<float>(),
                   row_width(q), kk.data, kk.dtype, kk.shape[1] * D, row_pos.as<int64_t>(), H, T, S,
                   D, K, scale);
}

void CpuBackend::topk_threshold(TensorView thr_score, TensorView thr_pos, TensorView scores,
                                TensorView positions) {
    check_f32(thr_score, "top-k threshold");
    FOT_ASSERT(scores.shape.size() == 4 && positions.shape == scores.shape);
    const int64_t R = scores.shape[0], H = scores.shape[1], T = scores.shape[2],
                  K = scores.shape[3];
    FOT_ASSERT(thr_score.numel() == H * T && thr_pos.numel() == H * T);
    k::topk_threshold(thr_score.as<float>(), thr_pos.as<int64_t>(), scores.as<float>(),
                      positions.as<int64_t>(), R, H, T, K);
}

void CpuBackend::attn_accumulate_selected(TensorView part, TensorView v, TensorView scores,
                                          TensorView rows, TensorView positions,
                                          TensorView thr_score, TensorView thr_pos) {
    check_f32(part, "attention partial");
    check_cpu(v, "attention values");
    const int64_t H = part.shape[0], T = part.shape[1], D = part.shape[2] - 2;
    const int64_t K = scores.shape[2];
    FOT_ASSERT(scores.shape[0] == H && scores.shape[1] == T && v.shape[2] == D);
    k::attn_accumulate_selected(part.as<float>(), v.data, v.dtype, v.shape[1] * D,
                                scores.as<float>(), rows.as<int64_t>(), positions.as<int64_t>(),
                                thr_score.as<float>(), thr_pos.as<int64_t>(), H, T, D, K);
}

}  // namespace fot
