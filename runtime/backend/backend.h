// Backend: the ~15 coarse operations the LongLLaMA forward needs, on one device.
//
// The model (runtime/model) is written once against this interface; CpuBackend is the
// reference every other backend is tested against. Conventions:
//  - Activations are f32, dense, row-major: a [T, N] view has T rows of N floats. A view's
//    shape gives the sizes; ops FOT_CHECK that shapes agree and that views live on this
//    backend's device.
//  - Weights are [N, K] torch Linear matrices in f32, bf16 or f16.
//  - Attention state is kept as partials [H, T, D + 2] (see kernels/cpu/ops.h) so that local
//    attention, each memory shard and other ranks' shards merge exactly.
//  - Key/value stores are head-major [H, capacity, D] (in f32 or the memory dtype); the
//    first S rows of each head are valid.
//  - Ops are ordered on the backend's stream (stream()); synchronize() waits for all of them. Host
//    pointers passed in (ids) are read before the call returns.
//  - precision() (runtime/core/precision.h) selects the arithmetic of matmul and
//    attn_accumulate: kExact (default) as described per op; kFast rounds their operands to
//    bf16 (x for matmul; q, k, v and the probabilities for attention) with fp32 accumulation
//    and fp32 softmax statistics. Other ops are the same in both modes; in particular the
//    top-k path (memory_topk, attn_accumulate_selected) stays fp32 in both modes.
//  - GEMM inputs: matmul rounds x to gemm_input_dtype(w.dtype) before multiplying (when that
//    is not f32). The ops that produce GEMM inputs (rmsnorm, silu_mul, attn_partial_finalize)
//    may write that dtype directly (rounded to nearest even, the same bits), and matmul takes
//    it as is: the same result without an f32 round trip and a conversion pass.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>

#include "runtime/core/precision.h"
#include "runtime/core/status.h"
#include "runtime/core/stream.h"
#include "runtime/core/tensor.h"

namespace fot {

// Bytes of each of the two host staging buffers a device backend's upload_rows() uses (what
// `fotrt inspect` counts as a device load's host memory).
inline constexpr size_t kUploadStagingBytes = size_t{16} << 20;

class Backend {
  public:
    virtual ~Backend() = default;

    virtual Device device() const = 0;
    virtual std::string name() const = 0;

    Precision precision() const { return precision_; }
    void set_precision(Precision p) { precision_ = p; }

    // ---- memory ----
    // A zero-initialised buffer on the device. Callers that read before writing rely on the
    // zeros (caches, partials, accumulators, outputs written only in part).
    virtual Buffer alloc(DType dtype, Shape shape) = 0;
    // A buffer whose contents are undefined until written: for buffers the caller fills
    // completely (checkpoint loads). Saves the zero-fill pass (and, on the CPU, the page faults
    // it takes before the real write). Defaults to alloc().
    virtual Buffer alloc_uninitialized(DType dtype, Shape shape) {
        return alloc(dtype, std::move(shape));
    }
    // Copies `bytes` from host memory into dst (device) / from src (device) to host.
    virtual void upload(TensorView dst, const void* host_src, size_t bytes) = 0;
    virtual void download(void* host_dst, TensorView src, size_t bytes) = 0;
    // Fills dst [R, ...] (this backend's memory) row block by row block: fill(host, row0, rows)
    // writes rows [row0, row0 + rows) of dst, dense, at `host`; blocks come in order, cover
    // [0, R) once, and fill runs on the calling thread. The CPU passes dst itself (one block).
    // Devices stage blocks through host memory: the CUDA backend through two pinned buffers of
    // a few MiB, the copy of one block overlapping the fill of the next, so host memory stays
    // bounded by the staging size whatever the tensor's size. Returns when dst is complete.
    virtual void upload_rows(
        TensorView dst, const std::function<void(void* host, int64_t row0, int64_t rows)>& fill);
    // Copies the first `rows` rows of src into dst at row `dst_row` (same row width & dtype).
    virtual void copy_rows(TensorView dst, int64_t dst_row, TensorView src, int64_t rows) = 0;

    // ---- dense ops ----
    // out[T, C] = table[ids - row_begin] (rows outside this shard are zero).
    virtual void embedding(TensorView out, const int32_t* host_ids, TensorView table,
                           int64_t row_begin) = 0;
    // out: f32, or bf16/f16 (rounded to nearest even) when it feeds a GEMM.
    virtual void rmsnorm(TensorView out, TensorView x, TensorView w, float eps) = 0;
    // out[T, N] = x[T, K] * w[N, K]^T. x is f32, or already in gemm_input_dtype(w.dtype).
    // w is a weight: a device backend may read it before earlier work on its stream has
    // finished (CudaBackend's decode GEMV does), so w must not be written by that work.
    virtual void matmul(TensorView out, TensorView x, TensorView w) = 0;
    // The dtype matmul rounds x to for weights of w_dtype in the current precision; kF32 when
    // it multiplies f32 x (then only f32 x is accepted).
    virtual DType gemm_input_dtype(DType w_dtype) const = 0;
    // Several matmuls of one x (q|k|v, gate|up): out_i = x * w_i^T, the results of matmul.
    // A backend may run them together. CudaBackend: one GEMV launch in decode (matmul's bits);
    // in prefill, when weights and outputs each lie one stride apart (split_rows), one
    // strided-batched cuBLAS GEMM (matmul's results up to the order of the fp32 sums: cuBLAS
    // may choose another kernel for a batch). Default: one matmul each, in order.
    struct MatmulTarget {
        TensorView out, w;
    };
    virtual void matmul_group(TensorView x, std::initializer_list<MatmulTarget> targets) {
        for (const MatmulTarget& t : targets) matmul(t.out, x, t.w);
    }
    // The MLP's gate|up matmuls and SiLU-mul: act = silu_mul(x * w_gate^T, x * w_up^T), the
    // bits of matmul_group(x, {{gate, w_gate}, {up, w_up}}) then silu_mul(act, gate, up).
    // gate and up [T, I] f32 are the caller's scratch (act may alias gate); their contents
    // afterwards are unspecified. CudaBackend: one GEMV launch in decode whose epilogue writes
    // act (no f32 gate/up round trip, no silu_mul launch). Default: those two ops.
    virtual void matmul_silu_mul(TensorView act, TensorView gate, TensorView up, TensorView x,
                                 TensorView w_gate, TensorView w_up) {
        matmul_group(x, {{gate, w_gate}, {up, w_up}});
        silu_mul(act, gate, up);
    }
    // A projection back to the residual stream, the residual add and the next RMSNorm:
    // proj = a * w^T, x += proj, xn = rmsnorm(x) * norm_w; the bits of matmul(proj, a, w) then
    // add_rmsnorm(xn, x, proj, norm_w, eps). proj [T, C] f32 is the caller's scratch and holds
    // a * w^T afterwards. CudaBackend: one GEMV launch in decode whose last block adds and
    // norms (no add_rmsnorm launch). Default: those two ops.
    virtual void matmul_add_rmsnorm(TensorView xn, TensorView x, TensorView proj, TensorView a,
                                    TensorView w, TensorView norm_w, float eps) {
        matmul(proj, a, w);
        add_rmsnorm(xn, x, proj, norm_w, eps);
    }
    // Rotates the first H*D columns of each row of x [T, >= H*D]; row t at position
    // first_pos + t (HF rotate-half convention).
    virtual void rope(TensorView x, int64_t H, int64_t D, int64_t first_pos, float theta) = 0;
    // out: f32 (may alias gate or up), or bf16/f16 (rounded) when it feeds a GEMM.
    virtual void silu_mul(TensorView out, TensorView gate, TensorView up) = 0;
    virtual void add(TensorView out, TensorView a, TensorView b) = 0;
    // The residual add and the next RMSNorm: x += r (f32, in place), then rmsnorm(out, x, w,
    // eps), with the bits of those two ops. A backend may do both in one pass (CudaBackend: one
    // launch, x read once). Default: add, then rmsnorm.
    virtual void add_rmsnorm(TensorView out, TensorView x, TensorView r, TensorView w, float eps) {
        add(x, x, r);
        rmsnorm(out, x, w, eps);
    }

    // ---- attention ----
    virtual void attn_partial_init(TensorView part) = 0;
    // Folds keys/values rows [0, S) of store k/v [H, cap, D] into part [H, T, D + 2] for
    // queries q [T, H*D]. Query t sees key j iff j <= t + causal_offset (no mask when
    // causal_offset >= S).
    virtual void attn_accumulate(TensorView part, TensorView q, TensorView k, TensorView v,
                                 int64_t S, float scale, int64_t causal_offset) = 0;
    // out [H, T, D+2] = merge of parts [R, H, T, D+2] in order. out may alias parts[0].
    virtual void attn_partial_merge(TensorView out, TensorView parts) = 0;
    // out [T, H*D] = normalised partial; f32, or bf16/f16 (rounded) when it feeds a GEMM.
    virtual void attn_partial_finalize(TensorView out, TensorView part) = 0;
    // Attention over one store alone (layers without memory): the bits of
    // attn_partial_init(part), attn_accumulate(part, q, k, v, S, scale, causal_offset),
    // attn_partial_finalize(out, part). part [H, T, D + 2] is the caller's scratch; its contents
    // afterwards are unspecified. A backend may do it in one pass (CudaBackend, T <= 8: the
    // decode kernel writes out itself, one launch instead of three). Default: those three ops.
    virtual void attn_one_store(TensorView out, TensorView part, TensorView q, TensorView k,
                                TensorView v, int64_t S, float scale, int64_t causal_offset) {
        attn_partial_init(part);
        attn_accumulate(part, q, k, v, S, scale, causal_offset);
        attn_partial_finalize(out, part);
    }
    // Writes x [T, H*D] (f32) into store [H, cap, D] rows [at, at + T), converting to the
    // store's dtype (rounding to nearest even for bf16).
    virtual void scatter_heads(TensorView store, int64_t at, TensorView x) = 0;
    // New tokens into the local cache: when `rotate`, q and k [T, >= H*D] first get RoPE at
    // positions at + t (as rope); then k and v go into k_store / v_store [H, cap, D] rows
    // [at, at + T) (as scatter_heads; H, D from k_store). The bits of rope(q), rope(k),
    // scatter_heads(k_store, at, k), scatter_heads(v_store, at, v), except that k is left
    // unspecified (a backend may rotate it on the way to the store only). A backend may do it
    // in one pass (CudaBackend: one launch instead of four, one angle per (t, i) for q and k).
    // Default: those four ops.
    virtual void rope_store_kv(TensorView q, TensorView k, TensorView v, TensorView k_store,
                               TensorView v_store, int64_t at, float theta, bool rotate) {
        FOT_ASSERT(k_store.shape.size() == 3);
        const int64_t H = k_store.shape[0], D = k_store.shape[2];
        if (rotate) {
            rope(q, H, D, at, theta);
            rope(k, H, D, at, theta);
        }
        scatter_heads(k_store, at, k);
        scatter_heads(v_store, at, v);
    }

    // ---- vocab-parallel log-softmax ----
    // For logits [T, V_r] (this rank's vocabulary columns, starting at id vocab_begin):
    // parts [T, 3] f32 = (row max, sum of exp(x - max), logit of host_targets[t] when this slice
    // holds that id, else 0). Ranks all-reduce these (max, rescaled sums, target) to get
    // log p(target) without gathering full-vocabulary rows. host_targets[t] < 0: no target.
    virtual void logsoftmax_parts(TensorView parts, TensorView logits, const int32_t* host_targets,
                                  int64_t vocab_begin) = 0;

    // ---- exact top-k memory retrieval (docs/architecture.md §6.3) ----
    // Candidate order: higher score first, then lower global position. For each (h, t) of
    // queries q [T, H*D], the K best rows of store k [H, cap, D] rows [0, S) under that order
    // (K = scores.shape[2]); row_pos [>= S] (i64) maps a row to its global memory position.
    // Outputs [H, T, K]: scores (f32, q.k * scale), rows (i64, -1 when S < K) and positions
    // (i64, -1 when absent), sorted best first; absent slots have score -inf.
    virtual void memory_topk(TensorView scores, TensorView rows, TensorView positions, TensorView q,
                             TensorView k, TensorView row_pos, int64_t S, float scale) = 0;
    // From every rank's candidates scores/positions [R, H, T, K], the K-th best overall per
    // (h, t): thr_score [H, T] (f32) and thr_pos [H, T] (i64). Fewer than K real candidates:
    // the threshold is (-inf, INT64_MAX), i.e. everything passes.
    virtual void topk_threshold(TensorView thr_score, TensorView thr_pos, TensorView scores,
                                TensorView positions) = 0;
    // Folds into part [H, T, D+2] the candidates (scores/rows/positions [H, T, K] of this
    // rank) that are at or before the threshold, using the stored scores.
    virtual void attn_accumulate_selected(TensorView part, TensorView v, TensorView scores,
                                          TensorView rows, TensorView positions,
                                          TensorView thr_score, TensorView thr_pos) = 0;

    virtual void synchronize() = 0;

    // ---- step graphs ----
    // A device backend may record the ops of a piece of a step and run them as one graph
    // (CudaBackend: a CUDA graph per piece, updated in place from step to step, so that a
    // decoded token costs a handful of launches instead of ~170). The caller brackets the
    // piece: graph_begin(rows) (rows: of the step) returns false when the backend does not
    // record (then the ops run as usual and nothing else is called), else the ops that follow
    // are recorded until graph_end(piece) runs them, `piece` numbering the pieces of a step.
    // Between the two only ops may be called: no upload, download or synchronize, nothing
    // that reads results on the host, no collective. graph_end() returning false means that
    // nothing ran (the recording failed, and the backend records no more): the caller enqueues
    // the same ops again. graph_abort() ends a recording whose ops threw; nothing runs.
    virtual bool graph_begin(int64_t /*rows*/) { return false; }
    virtual bool graph_end(int64_t /*piece*/) { return true; }
    virtual void graph_abort() {}
    // The stream the ops are ordered on; callers pass it to every Communicator collective on
    // this backend's buffers (NCCL then runs in order with the ops, no device-wide sync).
    // Stream{} on the CPU, where every op completes before returning.
    virtual Stream stream() const { return Stream{}; }

  protected:
    Precision precision_ = Precision::kExact;
};

// Creates the backend named `name` ("cpu" or "cuda"), on device `device_index` for CUDA.
// `threads` > 0 sets the CPU thread count. Throws fot::Error when the backend is not built
// or no device is available.
std::unique_ptr<Backend> make_backend(const std::string& name, int device_index, int threads);

// Devices the named backend can use on this node: CUDA devices visible to this process for
// "cuda" (0 without a driver or when not built), 1 for "cpu".
int backend_device_count(const std::string& name);

// A view of the first `rows` rows of a [R, ...] view.
TensorView first_rows(const TensorView& v, int64_t rows);
// A view of rows [begin, begin + rows) of a [R, ...] view (checked against R).
TensorView slice_rows(const TensorView& v, int64_t begin, int64_t rows);
// The same memory reinterpreted with another shape (same number of elements or fewer).
TensorView reshape(const TensorView& v, Shape shape);

}  // namespace fot
