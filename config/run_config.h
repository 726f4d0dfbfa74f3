// RunConfig: how to run a model (the YAML given with --config, overridden by CLI flags).
//
// Documented field by field in docs/configuration.md; examples in config/examples/.
// YAML layout:
//   model: DIR
//   backend: cpu | cuda
//   dtype: f32 | bf16          # compute dtype (CPU computes in f32)
//   precision: exact | fast    # unset: fast for bf16/f16 checkpoints, exact for f32
//   threads: N                 # 0 = all cores
//   parallel: { tp: 1, mp: 1 }
//   memory:
//     retrieval: dense | topk
//     k: 128
//     mem_dtype: bf16          # overrides config.json's mem_dtype when set
//     capacity_tokens: N       # per rank; 0 = unlimited (grows on demand)
//     capacity_bytes: N | "8GiB"
//   last_context_length: N     # overrides config.json when set
//   log_level: info
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/core/dtype.h"
#include "runtime/core/precision.h"
#include "runtime/core/status.h"

namespace fot {

enum class Retrieval { kDense, kTopK };
const char* retrieval_name(Retrieval r);

struct MemoryConfig {
    Retrieval retrieval = Retrieval::kDense;
    int64_t k = 128;
    std::optional<DType> mem_dtype;  // unset: the model's config.json value
    int64_t capacity_tokens = 0;     // 0: no token cap
    int64_t capacity_bytes = 0;      // 0: no byte cap
};

struct ParallelConfig {
    int64_t tp = 1;
    int64_t mp = 1;
};

struct RunConfig {
    std::string model;
    std::string backend = "cpu";
    DType dtype = DType::kF32;
    // exact | fast (runtime/core/precision.h); unset: decided by the checkpoint's linear
    // weight dtype when the session loads it (fast for bf16/f16, exact for f32).
    std::optional<Precision> precision;
    int64_t threads = 0;
    ParallelConfig parallel;
    MemoryConfig memory;
    std::optional<int64_t> last_context_length;
    std::string log_level;  // "" = environment / default
};

// Parses a YAML run config. Unknown keys are errors (a typo must not be silently ignored);
// messages name the file and the key path ("run.yaml: memory.k must be a positive integer").
Result<RunConfig> load_run_config(const std::string& path);
Result<RunConfig> parse_run_config(const std::string& yaml_text, const std::string& origin);
// Parses "8GiB", "512MB", "1.5GB", "1000000" into bytes. Units: B, KB/MB/GB/TB (powers of
// 1000), KiB/MiB/GiB/TiB (powers of 1024), case-insensitive; fractions of a byte round down.
Result<int64_t> parse_byte_size(const std::string& s);

// Value checks shared by the YAML reader and the CLI overrides (launch/run_options.h):
// ranges of tp, mp, k, threads, capacities, and the enum-like strings.
Status validate_run_config(const RunConfig& c, const std::string& origin);
// "dense" | "topk".
bool parse_retrieval(std::string_view s, Retrieval* out);
// Compute dtypes: f32 | bf16 (also "float32", "bfloat16").
bool parse_compute_dtype(std::string_view s, DType* out);
// Memory storage dtypes: bf16 | f32 | f16 (also the torch spellings).
bool parse_storage_dtype(std::string_view s, DType* out);

}  // namespace fot
