// The performance model of `fotrt bench --predict` (docs/scaling.md §3): per-phase time of
// one model step for a layout, from analytic operation counts and measured rates.
//
//  - step_counts(): the calls, FLOPs and bytes of every phase (phase_timer.h) that one step of
//    Q query tokens over a memory of M tokens costs on the critical rank of a group (tp rank 0,
//    mp rank 0: it also folds in the local attention). They equal what TimedBackend and
//    TimedCommunicator record on that rank (tests/jobs/perf_model_test.cpp).
//  - Compute phases take flops / rate (gemm, local_attn, mem_score, topk_select) or
//    bytes / rate (merge, other); the rates come from a calibration step measured in the same
//    run (Calibration), or from a Hardware description for projections.
//  - Collectives follow alpha-beta on a ring: all-reduce of n bytes over p ranks
//    2 (p - 1) alpha + 2 (p - 1) / p n beta; all-gather of n bytes per rank
//    (p - 1) alpha + (p - 1) n beta. `wait` (the barrier before each collective) costs the
//    measured barrier latency per call; load imbalance beyond that is not modelled.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "config/run_config.h"
#include "runtime/core/precision.h"
#include "runtime/jobs/phase_timer.h"

namespace fot {

// One measured step: a call of `query_tokens` tokens on a sequence whose memory holds
// `memory_tokens` entries per memory layer (LongLlama::fill_memory) and whose local cache is
// empty; logits for the last row only.
struct StepShape {
    ModelConfig model;
    int tp = 1, mp = 1;
    int64_t memory_tokens = 0, query_tokens = 1;
    Retrieval retrieval = Retrieval::kDense;
    int64_t k = 128;
    DType weights = DType::kF32;  // as multiplied (fast mode: bf16)
    Precision precision = Precision::kExact;
    DType mem_dtype = DType::kBF16;
};

// Memory tokens per memory layer held by mp rank `mp_rank` (blocks of W, block b on b mod mp).
int64_t memory_tokens_on_rank(const StepShape& s, int mp_rank);

// Counts (seconds = 0) of one step on tp rank 0, mp rank 0.
PhaseCounts step_counts(const StepShape& s);

struct Calibration {
    // Per retrieval mode (0 dense, 1 topk): flop/s of gemm, local_attn, mem_score,
    // topk_select; byte/s of merge and other (indexed by BenchPhase; collectives unused).
    std::array<std::array<double, kBenchPhases>, 2> rate{};
    // Seconds per call and (head, query) row on top of work / rate (per mode and phase; from
    // calibration steps of different memory sizes where the work differs, else 0).
    std::array<std::array<double, kBenchPhases>, 2> per_row{};
    double alpha = 0;    // s per message step
    double beta = 0;     // s per byte
    double barrier = 0;  // s per barrier (the `wait` phase per collective)
};

// Rates for one retrieval mode from calibration steps (shapes[i] measured as measured[i],
// e.g. several memory sizes), into cal: per phase a least-squares line
// seconds = work / rate + calls x heads x queries x per_row through the steps (the fixed part
// is per (head, query) row: top-k keeps k candidates per row whatever the memory size); a
// phase whose work is the same in every step (or whose line has a negative term) gets the
// rate of the summed work over the summed seconds and no fixed part.
void calibrate_rates(Calibration& cal, Retrieval r, const std::vector<StepShape>& shapes,
                     const std::vector<PhaseCounts>& measured);

// The phases whose work does not depend on the retrieval mode (gemm, local_attn, other) were
// measured in both modes' calibration steps: gives both modes the faster of the two rates
// (`use_min`: each was a minimum, a slow spell of the host made one of them slower) or their
// mean. A phase one mode did not calibrate is left alone.
void pool_mode_independent_rates(Calibration& cal, bool use_min);

// Seconds per phase of one step (calls, flops and bytes are step_counts()'s).
PhaseCounts predict_step(const StepShape& s, const Calibration& cal);

// A machine for projections: sustained rates (not peaks) and links.
struct Hardware {
    std::string name, description;
    double gemm_flops = 0;        // sustained dense GEMM flop/s (bf16 tensor cores)
    double attn_flops = 0;        // sustained memory-attention (and top-k) flop/s
    double local_attn_flops = 0;  // sustained causal local-attention flop/s
    double hbm_bytes = 0;         // sustained memory bandwidth, byte/s
    double mem_bytes = 0;         // device memory, bytes
    int gpus_per_node = 8;
    double intra_alpha = 0, intra_beta = 0;  // NVLink (a group inside a node)
    double inter_alpha = 0, inter_beta = 0;  // InfiniBand (a group spanning nodes)
};
// h100-nvlink-ib, h200-nvlink-ib (docs/scaling.md states their numbers).
const std::vector<Hardware>& hardware_presets();
const Hardware* find_hardware(const std::string& name);

// Projection of one step on `hw`: compute phases as max(flops / rate, bytes / bandwidth),
// collectives with the link of the group (NVLink when the group fits in a node, else IB).
PhaseCounts project_step(const StepShape& s, const Hardware& hw);

// Bytes one rank holds: its weight slice and its memory shard (rank tp 0, mp 0).
double rank_bytes(const StepShape& s);

}  // namespace fot
