// CpuBackend: the reference backend. f32 compute, BLAS GEMMs, OpenMP elsewhere; see
// kernels/cpu/ops.h for the arithmetic of each op. Precision::kFast: matmul rounds x to bf16
// (to f16 for f16 weights) into a scratch before the fp32 GEMM, attn_accumulate runs the
// kernel's bf16-operand variant; everything else is the same in both modes.
// On CPUs with AMX or AVX512_BF16 (run-time checks) the `fast` GEMMs with bf16 weights and
// more than 4 rows run on tdpbf16ps or vdpbf16ps (kernels/cpu/matmul_bf16.cpp); elsewhere the
// bf16 operands are multiplied in fp32 by SGEMM.
#pragma once

#include <vector>

#include "kernels/cpu/ops.h"
#include "runtime/backend/backend.h"

namespace fot {

// Not final: tests derive from it (e.g. to give it a fake stream()).
class CpuBackend : public Backend {
  public:
    // threads > 0: use that many OpenMP and BLAS threads.
    explicit CpuBackend(int threads = 0);
    // `fast` GEMMs of bf16 weights over more rows than this run on the bf16 GEMM
    // (kernels/cpu/ops.h matmul_bf16_dot) with fast_bf16_kernel() when the CPU has AMX or
    // AVX512_BF16; fewer rows, or neither, take SGEMM on rounded operands.
    static constexpr int64_t kBf16DotMinRows = 4;
    // kAmx when the CPU (and OS) allow AMX, else kNative when it has AVX512_BF16 and no AMX in
    // CPUID (where AMX exists, vdpbf16ps ran at half the fp32 FMA rate), else kEmulated
    // (meaning: none; the backend then uses SGEMM).
    static kernels::cpu::Bf16DotKernel fast_bf16_kernel();

    Device device() const override { return Device::cpu(); }
    std::string name() const override { return "cpu"; }

    Buffer alloc(DType dtype, Shape shape) override;
    Buffer alloc_uninitialized(DType dtype, Shape shape) override;
    void upload(TensorView dst, const void* host_src, size_t bytes) override;
    void download(void* host_dst, TensorView src, size_t bytes) override;
    void copy_rows(TensorView dst, int64_t dst_row, TensorView src, int64_t rows) override;

    void embedding(TensorView out, const int32_t* host_ids, TensorView table,
                   int64_t row_begin) override;
    void rmsnorm(TensorView out, TensorView x, TensorView w, float eps) override;
    void matmul(TensorView out, TensorView x, TensorView w) override;
    DType gemm_input_dtype(DType w_dtype) const override;
    void rope(TensorView x, int64_t H, int64_t D, int64_t first_pos, float theta) override;
    void silu_mul(TensorView out, TensorView gate, TensorView up) override;
    void add(TensorView out, TensorView a, TensorView b) override;

    void attn_partial_init(TensorView part) override;
    void attn_accumulate(TensorView part, TensorView q, TensorView k, TensorView v, int64_t S,
                         float scale, int64_t causal_offset) override;
    void attn_partial_merge(TensorView out, TensorView parts) override;
    void attn_partial_finalize(TensorView out, TensorView part) override;
    void scatter_heads(TensorView store, int64_t at, TensorView x) override;

    void logsoftmax_parts(TensorView parts, TensorView logits, const int32_t* host_targets,
                          int64_t vocab_begin) override;
    void memory_topk(TensorView scores, TensorView rows, TensorView positions, TensorView q,
                     TensorView k, TensorView row_pos, int64_t S, float scale) override;
    void topk_threshold(TensorView thr_score, TensorView thr_pos, TensorView scores,
                        TensorView positions) override;
    void attn_accumulate_selected(TensorView part, TensorView v, TensorView scores, TensorView rows,
                                  TensorView positions, TensorView thr_score,
                                  TensorView thr_pos) override;

    void synchronize() override {}

  private:
    std::vector<float> x_round_;  // matmul's rounded x in kFast (one call at a time)
    std::vector<float> staging_;  // f32 results of ops with a bf16/f16 output, before rounding
    // Where an op writes its f32 result: out itself when f32, else staging_; store_staged
    // then rounds staging_ into out.
    float* f32_staging(const TensorView& out);
    void store_staged(TensorView out);
};

}  // namespace fot
