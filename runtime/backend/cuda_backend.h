// CudaBackend: the Backend on one NVIDIA GPU (built when FOT_HAVE_CUDA; see docs/cuda.md).
//
// Every op computes what CpuBackend computes (kernels/cpu/ops.h is the arithmetic), with fp32
// activations and accumulation: cuBLAS GEMMs (kernels/cuda/blas.h: f32 weights run true fp32,
// bf16/f16 weights round the activations to the weight type first), own kernels for the
// rest (kernels/cuda/ops.h). Results differ from the CPU's by float rounding only, except the
// bf16/f16 GEMMs (one extra activation rounding).
//
// Memory: buffers from alloc() are device memory of this GPU, zero-filled (not those from
// alloc_uninitialized(), which checkpoint loads fill whole), freed by their
// Buffer (they may outlive the backend). Allocation and free are stream-ordered
// (cudaMallocAsync / cudaFreeAsync on the backend's stream, from the device's default memory
// pool with its release threshold raised so freed memory stays cached): neither synchronises
// the device. A buffer is valid for work enqueued on the backend's stream after alloc();
// work on another stream must be ordered after the backend's stream first. A buffer freed
// after the backend is gone uses cudaFree. Key/value stores live on the device in their own
// dtype. Scratch (GEMM activation copies, attention key splits, top-k scores, the staging
// of token ids) is grow-only: it is sized by the first call of each shape and never
// reallocated per step; allocation_count() lets tests check that. Growing it is
// stream-ordered too (the old block is freed after the work already enqueued on it).
//
// Streams: all ops are enqueued on one *non-blocking* stream the backend owns (stream();
// not serialised with the legacy default stream). The model passes stream() to every
// collective, so NCCL runs in order with the ops without any device-wide synchronisation
// (docs/cuda.md). upload() and download() synchronise the stream (NOTE: hidden syncs), so
// host memory passed in may be reused as soon as they return; a collective that never
// completes cannot hang them for good: the NCCL watchdog (parallel/nccl_watchdog.h) aborts
// the communicators and the world. embedding() passes up to 8 ids as a kernel parameter and
// stages more in pinned memory; it does not synchronise.
//
// Threads: one thread at a time; the constructor makes the device current on the calling
// thread and ops assume it stays current (one GPU per rank).
// Construction never happens implicitly: a CPU run never touches CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend/backend.h"
#include "runtime/backend/cuda_phase_profiler.h"
#include "runtime/core/stream.h"

namespace fot {

namespace kernels::cuda {
class Blas;
}

class CudaBackend final : public Backend {
  public:
    // Throws fot::Error when CUDA has no device `device_index` (or no device/driver at all).
    explicit CudaBackend(int device_index);
    ~CudaBackend() override;
    CudaBackend(const CudaBackend&) = delete;
    CudaBackend& operator=(const CudaBackend&) = delete;

    Device device() const override { return Device::cuda(device_); }
    std::string name() const override { return "cuda"; }

    Buffer alloc(DType dtype, Shape shape) override;
    Buffer alloc_uninitialized(DType dtype, Shape shape) override;
    // Through two pinned staging buffers of kUploadStagingBytes (backend.h; or one row, when
    // larger),
    // allocated on first use and kept for the backend's life: the host fills one while the
    // other's copy runs on the stream. Synchronises the stream before returning.
    void upload_rows(
        TensorView dst,
        const std::function<void(void* host, int64_t row0, int64_t rows)>& fill) override;
    void upload(TensorView dst, const void* host_src, size_t bytes) override;
    void download(void* host_dst, TensorView src, size_t bytes) override;
    void copy_rows(TensorView dst, int64_t dst_row, TensorView src, int64_t rows) override;

    void embedding(TensorView out, const int32_t* host_ids, TensorView table,
                   int64_t row_begin) override;
    void rmsnorm(TensorView out, TensorView x, TensorView w, float eps) override;
    void matmul(TensorView out, TensorView x, TensorView w) override;
    DType gemm_input_dtype(DType w_dtype) const override;
    void matmul_group(TensorView x, std::initializer_list<MatmulTarget> targets) override;
    void rope(TensorView x, int64_t H, int64_t D, int64_t first_pos, float theta) override;
    void silu_mul(TensorView out, TensorView gate, TensorView up) override;
    void matmul_silu_mul(TensorView act, TensorView gate, TensorView up, TensorView x,
                         TensorView w_gate, TensorView w_up) override;
    void matmul_add_rmsnorm(TensorView xn, TensorView x, TensorView proj, TensorView a,
                            TensorView w, TensorView norm_w, float eps) override;
    void add(TensorView out, TensorView a, TensorView b) override;
    void add_rmsnorm(TensorView out, TensorView x, TensorView r, TensorView w, float eps) override;

    void attn_partial_init(TensorView part) override;
    void attn_accumulate(TensorView part, TensorView q, TensorView k, TensorView v, int64_t S,
                         float scale, int64_t causal_offset) override;
    void attn_partial_merge(TensorView out, TensorView parts) override;
    void attn_partial_finalize(TensorView out, TensorView part) override;
    void attn_one_store(TensorView out, TensorView part, TensorView q, TensorView k, TensorView v,
                        int64_t S, float scale, int64_t causal_offset) override;
    void scatter_heads(TensorView store, int64_t at, TensorView x) override;
    void rope_store_kv(TensorView q, TensorView k, TensorView v, TensorView k_store,
                       TensorView v_store, int64_t at, float theta, bool rotate) override;

    void memory_topk(TensorView scores, TensorView rows, TensorView positions, TensorView q,
                     TensorView k, TensorView row_pos, int64_t S, float scale) override;
    void topk_threshold(TensorView thr_score, TensorView thr_pos, TensorView scores,
                        TensorView positions) override;
    void attn_accumulate_selected(TensorView part, TensorView v, TensorView scores, TensorView rows,
                                  TensorView positions, TensorView thr_score,
                                  TensorView thr_pos) override;

    void synchronize() override;

    // Step graphs (backend.h): each piece is stream-captured and run as a CUDA graph, the
    // graph of the same piece (and row count) at the previous step updated in place
    // (cudaGraphExecUpdate keeps the instantiated graph and takes the new parameters). Only
    // for steps of at most kernels::cuda::kGemvMaxT rows (decode; their GEMMs are GEMV launches)
    // and while profiling is off. FOT_CUDA_GRAPH=0 turns them off; a capture or launch that fails
    // turns them off for the backend's life, with a warning. Buffers allocated while a piece
    // is captured are allocated and zeroed on a side stream that is waited for; frees are
    // held back until the piece has been launched.
    bool graph_begin(int64_t rows) override;
    bool graph_end(int64_t piece) override;
    void graph_abort() override;
    // Graph launches and instantiations so far (tests: a steady decode updates, it does not
    // instantiate).
    int64_t graph_launches() const;
    int64_t graph_instantiations() const;
    // Step graphs on or off (tests, benchmarks); on by default unless FOT_CUDA_GRAPH=0.
    void set_graphs(bool on);

    // ---- CUDA-only extras (benchmarks, tests, vocab-parallel scoring) ----------------------
    // The backend's stream (a cudaStream_t); the model passes it to every collective.
    Stream stream() const override { return Stream{stream_}; }
    // Per row of logits [T, V] (f32): max_out[T] = row max, sum_out[T] = sum exp(x - max),
    // as kernels::cpu::row_max_sumexp (the vocab-parallel log-softmax all-reduces these).
    void row_max_sumexp(TensorView max_out, TensorView sum_out, TensorView logits);
    void logsoftmax_parts(TensorView parts, TensorView logits, const int32_t* host_targets,
                          int64_t vocab_begin) override;
    // Fills dst (f32, bf16 or f16) with deterministic uniform values in [-scale, scale).
    void fill_uniform(TensorView dst, uint64_t seed, float scale);
    // Device memory this backend's buffers and scratch hold now / at most so far, and how many
    // device allocations it made (buffers + scratch growth).
    int64_t allocated_bytes() const;
    int64_t peak_allocated_bytes() const;
    int64_t allocation_count() const;
    int sm_count() const { return sm_count_; }
    // Per-phase GPU time of the ops (benchmarks): on = every op records CUDA events around
    // its launches (a few microseconds each); take_phase_stats() synchronises and returns the
    // statistics since the last call (all zero when profiling is off).
    void set_profiling(bool on);
    PhaseStats take_phase_stats();
    // The same interval per op (its name and phase), most time first (what "other" is made of).
    std::vector<OpStat> op_stats() const;

  private:
    // matmul_group as one strided-batched GEMM, when weights and outputs each lie one stride
    // apart (split_rows); false (nothing done) otherwise.
    bool matmul_batched(TensorView x, std::initializer_list<MatmulTarget> targets);
    struct Scratch;
    struct Stats;
    void check_device(const TensorView& v, const char* what) const;
    void check_f32(const TensorView& v, const char* what) const;
    void check_float(const TensorView& v, const char* what) const;  // f32, bf16 or f16
    // x is f32 or gemm_input_dtype(w_dtype): what a matmul of such weights accepts.
    void check_gemm_input(const TensorView& x, DType w_dtype) const;
    void* scratch(Scratch& s, size_t bytes);
    Buffer alloc_impl(DType dtype, Shape shape, bool zero);
    // Copies T host token ids into the device ids scratch (through pinned staging), ordered on
    // the stream; returns the device pointer.
    const int32_t* upload_ids(const int32_t* host_ids, int64_t T);
    // At least H zeroed split-merge counters (the kernels leave them zeroed).
    unsigned* split_tickets(int64_t H);
    // The stream allocations and their zero fills go on: the backend's, or while a graph
    // piece is captured a side stream (then zero_fill waits for it).
    void* alloc_stream();
    void zero_fill(void* p, size_t bytes);
    // Frees held back during a capture, enqueued on the stream (after the piece).
    void release_held_frees();
    struct Graphs;
    std::unique_ptr<Graphs> graphs_;

    int device_ = 0;
    int sm_count_ = 1;
    void* stream_ = nullptr;     // cudaStream_t
    void* ids_event_ = nullptr;  // cudaEvent_t: the last ids upload finished reading the staging
    std::shared_ptr<Stats> stats_;
    std::unique_ptr<kernels::cuda::Blas> blas_;
    std::unique_ptr<Scratch> gemm_scratch_, attn_scratch_, topk_scratch_, copy_scratch_,
        ids_scratch_;
    // Per-head counters of the decode kernel's split merge (kernels/cuda/ops.h attn_accumulate).
    std::unique_ptr<Scratch> tickets_;
    void* ids_host_ = nullptr;                 // pinned staging for embedding ids
    std::unique_ptr<PhaseProfiler> profiler_;  // null unless set_profiling(true)
    size_t ids_host_bytes_ = 0;
    void* staging_[2] = {nullptr, nullptr};        // pinned, for upload_rows
    void* staging_event_[2] = {nullptr, nullptr};  // cudaEvent_t: the last copy out of each
    size_t staging_bytes_ = 0;
};

}  // namespace fot
