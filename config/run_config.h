// RunConfig: how to run a model (the YAML given with --config, overridden by CLI flags).
//
// Every field is one row of run_options() below: its flag, its YAML key, its help, its value
// type and checks; the defaults are the member initializers here. Documented field by field
// in docs/configuration.md; examples in config/examples/. YAML layout:
//   model: DIR
//   backend: cpu | cuda
//   dtype: f32 | bf16
//   precision: exact | fast
//   threads: N
//   parallel: { tp: N, mp: N }
//   memory: { retrieval: dense | topk, k: N, mem_dtype: DTYPE, capacity_tokens: N,
//             capacity_bytes: SIZE }
//   last_context_length: N
//   log_level: LEVEL
//   quiet: BOOL
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "config/options.h"
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
    bool quiet = false;     // no progress lines (runtime/core/progress.h)
};

// The run options, one row each (config/options.h): flag, YAML key, help, value type and
// checks. The YAML reader below, the CLI (launch/run_options.h), every command's --help and
// validate_run_config() iterate these rows; docs/configuration.md lists them (a test checks).
const OptionTable<RunConfig>& run_options();

// Parses a YAML run config (one document: a second one after '---' is an error). Unknown
// keys are errors (a typo must not be silently ignored);
// messages name the file, the line and the key path
// ("run.yaml:7: memory.k expects a positive integer, got 'abc'").
Result<RunConfig> load_run_config(const std::string& path);
Result<RunConfig> parse_run_config(const std::string& yaml_text, const std::string& origin);

// A job YAML (`fotrt batch --config JOB.yaml`, docs/jobs.md): a run YAML whose top level also
// holds the job's options, named like its flags with _ ("task: score", or in flow style
// "{model: m, task: score, input: c.jsonl}"). The whole file is parsed by yaml-cpp.
struct JobYaml {
    RunConfig run;                              // the run keys (defaults where absent)
    std::map<std::string, std::string> values;  // job key -> its scalar value, as written
    std::map<std::string, int> lines;           // job key -> 1-based line, for messages
};

// Parses a job YAML: the top-level keys in `job_keys` must be plain scalars (not null, a list
// or a mapping) and appear once; everything else is read as by parse_run_config(). Errors
// name the file and the line ("job.yaml:2: input must be a plain value ...").
Result<JobYaml> parse_job_yaml(const std::string& yaml_text, const std::string& origin,
                               const std::set<std::string>& job_keys);

// The checks of run_options() on a hand-built config ("origin: parallel.tp must be >= 1,
// got 0"); the YAML reader and the CLI run them on every value they read.
Status validate_run_config(const RunConfig& c, const std::string& origin);
// "dense" | "topk".
bool parse_retrieval(std::string_view s, Retrieval* out);
// Compute dtypes: f32 | bf16 (also "float32", "bfloat16").
bool parse_compute_dtype(std::string_view s, DType* out);
// Memory storage dtypes: bf16 | f32 | f16 (also the torch spellings).
bool parse_storage_dtype(std::string_view s, DType* out);

}  // namespace fot
