// SweepConfig: the grid of `fotrt bench --sweep SWEEP.yaml` (docs/scaling.md §1; examples in
// config/examples/sweep-*.yaml). Every list key may also be a single value:
//
//   model: tiny                 # tiny | 3b | 7b | a folder with a config.json (its shape)
//   shape: { num_hidden_layers: 8 }   # optional HF-named overrides of the model's shape
//   weights: f32                # f32 | bf16 (random values; nothing is downloaded)
//   backend: [cpu]              # cpu | cuda
//   precision: [exact]          # exact | fast
//   threads: 1                  # CPU threads per rank (0 = the rank's share of the cores)
//   memory_tokens: [4k, 16k]    # memory entries per memory layer (counts: 4096, 4k, 1m)
//   query_tokens: [256]         # tokens of the measured call, 1..W (1 = one decode step)
//   retrieval: [dense, topk]
//   k: [64]                     # top-k only
//   layouts: [{tp: 1, mp: 2, dp: 2}]   # tp x mp x dp must equal the world size, else skipped
//   repeats: 3                  # timed calls per point
//   statistic: median           # median | min: which call a point reports (and the
//                               # calibration's per-phase statistic)
//   rounds: 1                   # passes over the grid; a point reports its best (min) or
//                               # median round
//   clock: wall                 # wall | cpu (CPU time of each rank: oversubscribed hosts)
//   calibration: { memory_tokens: 16k, query_tokens: 256 }   # optional (default: below)
//
// Unknown keys are errors (a typo must not silently shrink a sweep).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "config/run_config.h"
#include "runtime/core/precision.h"
#include "runtime/core/status.h"

namespace fot {

struct SweepLayout {
    int tp = 1, mp = 1, dp = 1;
};

struct SweepConfig {
    std::string model_name = "tiny";  // what `model:` said
    ModelConfig model;                // the shape, overrides applied, validated
    DType weights = DType::kF32;
    std::vector<std::string> backends = {"cpu"};
    std::vector<Precision> precisions = {Precision::kExact};
    int threads = 1;
    std::vector<int64_t> memory_tokens = {4096};
    std::vector<int64_t> query_tokens = {256};
    std::vector<Retrieval> retrievals = {Retrieval::kDense};
    std::vector<int64_t> ks = {64};
    std::vector<SweepLayout> layouts = {{1, 1, 1}};
    int repeats = 3;
    bool cpu_clock = false;  // clock: cpu
    // statistic: min. The fastest call of a point (and per-phase minima in calibration): on a
    // shared or oversubscribed host, interference only ever adds time, so the minimum is the
    // steadiest estimate of the work's own cost; the median is the typical call.
    bool use_min = false;
    int rounds = 1;
    // The calibration steps' largest memory and query size (perf_model.h); 0 = the largest
    // memory per rank of the grid / the first query size.
    int64_t calibration_memory = 0, calibration_query = 0;
};

// The built-in shapes: "tiny" (CI), "3b" (LongLLaMA 3B), "7b" (LongLLaMA Code-7B).
bool builtin_model_shape(const std::string& name, ModelConfig* out);

// Reads and checks a sweep; errors name the file and key ("s.yaml: layouts[1].tp must be
// >= 1, got 0").
Result<SweepConfig> parse_sweep_config(const std::string& yaml_text, const std::string& origin);
Result<SweepConfig> load_sweep_config(const std::string& path);

}  // namespace fot
