// Per-phase wall time, FLOPs and bytes of one rank's model steps, for `fotrt bench`
// (docs/scaling.md). Two decorators sit between the model and the real backend and
// communicators, so the model code is unchanged:
//  - TimedBackend forwards every op and charges its time and analytic FLOP/byte counts to a
//    phase: matmul and matmul_group -> gemm; attn_accumulate with a causal mask -> local_attn,
//    without one (memory shards) -> mem_score; memory_topk -> mem_score; topk_threshold and
//    attn_accumulate_selected -> topk_select; attn_partial_merge -> merge; the rest -> other.
//  - TimedCommunicator forwards the collectives of one group (tp or mp) and charges them to
//    that group's phase (tp_allreduce, mp_allgather) with the bytes this rank sent. Before
//    each collective it waits at a barrier of the group, charged to `wait`: the time ranks
//    spend waiting for the slowest member (load imbalance) is kept apart from the transfer,
//    which the performance model (perf_model.h) predicts with alpha-beta.
// On a device backend (CUDA) each op is followed by synchronize() so that host wall time is
// the op's time: slower than a real run by the launch gaps (the GPU benchmark's event-based
// profiler, cuda_phase_profiler.h, is the finer tool for kernels). On the CPU every op
// completes before returning, so nothing is added but the clock reads.
// Not thread-safe (like the backend and communicators it wraps).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "runtime/backend/backend.h"

namespace fot {

// The clock phases are timed with: wall time (what a user waits for), or the CPU time of
// this process (each rank's own work, whatever the scheduler does: for single-threaded ranks
// sharing cores, as on CI, where wall time would mostly measure the other ranks).
enum class BenchClock { kWall, kCpu };
double bench_clock_seconds(BenchClock c);

enum class BenchPhase {
    kGemm,
    kLocalAttn,
    kMemScore,
    kTopkSelect,
    kMerge,
    kOther,
    kTpAllreduce,
    kMpAllgather,
    kWait,
    kCount
};
constexpr int kBenchPhases = static_cast<int>(BenchPhase::kCount);
// "gemm", "local_attn", "mem_score", "topk_select", "merge", "other", "tp_allreduce",
// "mp_allgather", "wait": the CSV column stems (docs/scaling.md).
const char* bench_phase_name(BenchPhase p);

struct PhaseCount {
    int64_t calls = 0;
    double seconds = 0;
    double flops = 0;  // analytic: multiply-add = 2
    double bytes = 0;  // compute phases: bytes read and written; collectives: bytes sent
};
struct PhaseCounts {
    std::array<PhaseCount, kBenchPhases> p{};
    PhaseCount& operator[](BenchPhase b) { return p[static_cast<size_t>(b)]; }
    const PhaseCount& operator[](BenchPhase b) const { return p[static_cast<size_t>(b)]; }
    double seconds() const;  // sum over phases
};

class TimedBackend final : public Backend {
  public:
    // `inner` must outlive this; its precision is copied (set the inner's first).
    TimedBackend(Backend& inner, PhaseCounts& counts, BenchClock clock = BenchClock::kWall);

    Device device() const override { return inner_.device(); }
    std::string name() const override { return inner_.name(); }
    Buffer alloc(DType dtype, Shape shape) override { return inner_.alloc(dtype, shape); }
    void upload(TensorView dst, const void* host_src, size_t bytes) override;
    void download(void* host_dst, TensorView src, size_t bytes) override;
    void copy_rows(TensorView dst, int64_t dst_row, TensorView src, int64_t rows) override;
    void embedding(TensorView out, const int32_t* host_ids, TensorView table,
                   int64_t row_begin) override;
    void rmsnorm(TensorView out, TensorView x, TensorView w, float eps) override;
    void matmul(TensorView out, TensorView x, TensorView w) override;
    // The fused ops go to the inner backend as one call each (so a CUDA sweep times the
    // kernels a real run launches), charged with the sums of their parts' FLOPs and bytes
    // (matmul_group reads x once).
    void matmul_group(TensorView x, std::initializer_list<MatmulTarget> targets) override;
    void matmul_silu_mul(TensorView act, TensorView gate, TensorView up, TensorView x,
                         TensorView w_gate, TensorView w_up) override;
    void matmul_add_rmsnorm(TensorView xn, TensorView x, TensorView proj, TensorView a,
                            TensorView w, TensorView norm_w, float eps) override;
    void attn_one_store(TensorView out, TensorView part, TensorView q, TensorView k, TensorView v,
                        int64_t S, float scale, int64_t causal_offset) override;
    void add_rmsnorm(TensorView out, TensorView x, TensorView r, TensorView w, float eps) override;
    void rope_store_kv(TensorView q, TensorView k, TensorView v, TensorView k_store,
                       TensorView v_store, int64_t at, float theta, bool rotate) override;
    DType gemm_input_dtype(DType w_dtype) const override {
        return inner_.gemm_input_dtype(w_dtype);
    }
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
    void synchronize() override { inner_.synchronize(); }
    Stream stream() const override { return inner_.stream(); }

  private:
    template <typename F>
    void timed(BenchPhase phase, double flops, double bytes, F&& op);
    Backend& inner_;
    PhaseCounts& counts_;
    BenchClock clock_;
    bool sync_;  // device backends: synchronise after each op
};

class TimedCommunicator final : public parallel::Communicator {
  public:
    // Collectives are charged to `phase`; `sync` (may be empty) waits for device work so a
    // stream-ordered collective is timed to completion.
    TimedCommunicator(parallel::Communicator& inner, PhaseCounts& counts, BenchPhase phase,
                      std::function<void()> sync, BenchClock clock = BenchClock::kWall);

    int rank() const override { return inner_.rank(); }
    int size() const override { return inner_.size(); }
    Device device() const override { return inner_.device(); }
    const char* backend_name() const override { return inner_.backend_name(); }
    std::unique_ptr<Communicator> split(int color, int key) const override;

  protected:
    void do_all_reduce(TensorView buf, parallel::ReduceOp op, Stream s) override;
    void do_all_gather(TensorView in, TensorView out, Stream s) override;
    void do_broadcast(TensorView buf, int root, Stream s) override;
    void do_send(TensorView buf, int peer, Stream s) override;
    void do_recv(TensorView buf, int peer, Stream s) override;
    void do_sendrecv(TensorView send_buf, int dst, TensorView recv_buf, int src, Stream s) override;
    void do_barrier() override { inner_.barrier(); }
    bool do_probe(int peer) override { return inner_.probe(peer); }

  private:
    template <typename F>
    void timed(double bytes, F&& op);
    parallel::Communicator& inner_;
    PhaseCounts& counts_;
    BenchPhase phase_;
    std::function<void()> sync_;
    BenchClock clock_;
};

}  // namespace fot
