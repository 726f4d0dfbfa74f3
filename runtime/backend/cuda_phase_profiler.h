// PhaseProfiler: per-phase GPU time of a CudaBackend's ops, for benchmarks (bench/gpu_bench).
//
// When enabled, each op records a pair of CUDA events on the backend's stream around its
// launches and adds its analytic FLOP and byte counts to its phase and to its own line (the
// op's name); take() waits for the stream and sums the event intervals per phase and per op. Events
// come from a grow-only pool, so profiling allocates only while the pool grows. The event pairs
// cost a few microseconds per op (NOTE: visible in decode timings, negligible in prefill). Not
// thread-safe, like the backend. Built only with CUDA.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fot {

enum class Phase {
    kGemm,             // matmul
    kLocalAttention,   // attn_accumulate with a causal mask (the local window)
    kMemoryAttention,  // attn_accumulate without a mask (memory shards)
    kTopk,             // memory_topk, topk_threshold, attn_accumulate_selected
    kOther,            // norms, RoPE, SiLU, adds, copies, merges, embedding, conversions
    kCount
};
const char* phase_name(Phase p);

struct PhaseStat {
    int64_t calls = 0;
    double seconds = 0, flops = 0, bytes = 0;
};
using PhaseStats = std::array<PhaseStat, static_cast<size_t>(Phase::kCount)>;
// One backend op's share of a phase (what "other" is made of).
struct OpStat {
    std::string op;
    Phase phase = Phase::kOther;
    PhaseStat stat;
};

class PhaseProfiler {
  public:
    explicit PhaseProfiler(void* stream);  // cudaStream_t
    ~PhaseProfiler();
    PhaseProfiler(const PhaseProfiler&) = delete;
    PhaseProfiler& operator=(const PhaseProfiler&) = delete;

    // Records the start of op `op` (a name that outlives the profiler: a literal) of `phase`;
    // returns the slot to pass to end().
    size_t begin(Phase phase, double flops, double bytes, const char* op);
    void end(size_t slot);
    // Synchronises the stream, returns the statistics since the last take() and resets them.
    PhaseStats take();
    // Per op (name and phase) over the same interval as the last take(), most time first.
    const std::vector<OpStat>& ops() const { return ops_; }

  private:
    struct Slot {
        void* start = nullptr;  // cudaEvent_t
        void* stop = nullptr;
        Phase phase = Phase::kOther;
        const char* op = "";
    };
    void* stream_;
    std::vector<Slot> slots_;
    size_t used_ = 0;
    PhaseStats pending_{};  // calls, flops, bytes of recorded slots (seconds added by take)
    std::vector<OpStat> pending_ops_, ops_;
};

}  // namespace fot
