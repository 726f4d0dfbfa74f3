#include "launch/run_options.h"

#include <filesystem>
#include <string>

#include "runtime/core/logging.h"
#include "runtime/core/status.h"

namespace fot::cli {

namespace fs = std::filesystem;

void add_run_options(Args& args) {
    args.option("config", "RUN.yaml",
                "run configuration (see docs/configuration.md); flags given here override it");
    args.option("model", "DIR", "model directory (config.json, tokenizer.model, weights)");
    args.option("backend", "cpu|cuda", "compute backend", "cpu");
    args.option("dtype", "f32|bf16", "compute dtype (the CPU backend computes in f32)", "f32");
    args.option("precision", "exact|fast",
                "arithmetic: exact = fp32 (the golden contract), fast = bf16 GEMM/attention "
                "operands with fp32 accumulation and bf16 local caches",
                "fast for bf16/f16 checkpoints, exact for f32");
    args.option("threads", "N", "CPU threads per rank, 0 = all cores", "0");
    args.option("tp", "N", "tensor-parallel degree", "1");
    args.option("mp", "N", "memory-parallel degree (memory split by blocks across N ranks)", "1");
    args.option("retrieval", "dense|topk", "memory attention: exact dense or exact top-k", "dense");
    args.option("k", "N", "memory keys per (query, head) with --retrieval topk", "128");
    args.option("mem-dtype", "bf16|f32|f16", "storage dtype of memory keys and values",
                "config.json's mem_dtype");
    args.option("mem-capacity", "TOKENS",
                "memory tokens per rank, e.g. 65536, 64k or 1m; 0 = unlimited", "0");
    args.option("mem-capacity-bytes", "SIZE", "memory byte budget per rank, e.g. 8GiB or 512MB",
                "no cap");
    args.option("last-context-length", "N", "tokens of the final window kept in the local cache",
                "config.json's last_context_length");
    args.option("log-level", "LEVEL", "error|warn|info|debug", "FOT_LOG_LEVEL or info");
}

namespace {

int64_t int_at_least(const Args& args, const char* name, int64_t min, const char* expected) {
    int64_t v = *args.get_int_opt(name);
    FOT_CHECK(v >= min, args.command(), ": --", name, " expects ", expected, ", got ", v);
    return v;
}

template <typename Parse>
void choice(const Args& args, const char* name, const char* expected, Parse parse) {
    std::string s = args.get(name);
    FOT_CHECK(parse(s), args.command(), ": --", name, " '", s, "' is unknown (expected ", expected,
              ")");
}

}  // namespace

namespace {
RunConfig apply_run_flags(const Args& args, RunConfig c, const std::string& origin);
}  // namespace

RunConfig resolve_run_config(const Args& args) {
    if (args.has("config")) {
        const std::string origin = args.get("config");
        return apply_run_flags(args, load_run_config(origin).value(), origin);
    }
    return apply_run_flags(args, RunConfig{}, args.command());
}

RunConfig resolve_run_config(const Args& args, const std::string& yaml_text,
                             const std::string& origin) {
    return apply_run_flags(args, parse_run_config(yaml_text, origin).value(), origin);
}

namespace {
RunConfig apply_run_flags(const Args& args, RunConfig c, const std::string& origin) {
    if (args.has("model")) c.model = args.get("model");
    if (args.has("backend")) {
        choice(args, "backend", "cpu or cuda", [&](const std::string& s) {
            c.backend = s;
            return s == "cpu" || s == "cuda";
        });
    }
    if (args.has("dtype")) {
        choice(args, "dtype", "f32 or bf16",
               [&](const std::string& s) { return parse_compute_dtype(s, &c.dtype); });
    }
    if (args.has("precision")) {
        Precision p;
        choice(args, "precision", "exact or fast",
               [&](const std::string& s) { return parse_precision(s, &p); });
        c.precision = p;
    }
    if (args.has("threads")) c.threads = int_at_least(args, "threads", 0, "an integer >= 0");
    if (args.has("tp")) c.parallel.tp = int_at_least(args, "tp", 1, "an integer >= 1");
    if (args.has("mp")) c.parallel.mp = int_at_least(args, "mp", 1, "an integer >= 1");
    if (args.has("retrieval")) {
        choice(args, "retrieval", "dense or topk",
               [&](const std::string& s) { return parse_retrieval(s, &c.memory.retrieval); });
    }
    if (args.has("k")) c.memory.k = int_at_least(args, "k", 1, "a positive integer");
    if (args.has("mem-dtype")) {
        DType t;
        choice(args, "mem-dtype", "bf16, f32 or f16",
               [&](const std::string& s) { return parse_storage_dtype(s, &t); });
        c.memory.mem_dtype = t;
    }
    if (args.has("mem-capacity")) {
        std::string s = args.get("mem-capacity");
        // 0 lifts a cap set in the YAML; parse_count only takes positive counts.
        c.memory.capacity_tokens =
            s == "0" ? 0 : parse_count(s, args.command() + ": --mem-capacity");
    }
    if (args.has("mem-capacity-bytes")) {
        Result<int64_t> bytes = parse_byte_size(args.get("mem-capacity-bytes"));
        FOT_CHECK(bytes.ok(), args.command(), ": --mem-capacity-bytes: ", bytes.status().message());
        c.memory.capacity_bytes = bytes.value();
    }
    if (args.has("last-context-length")) {
        c.last_context_length = int_at_least(args, "last-context-length", 1, "a positive integer");
    }
    if (args.has("log-level")) {
        LogLevel level;
        choice(args, "log-level", "error, warn, info or debug",
               [&](const std::string& s) { return parse_log_level(s, &level); });
        c.log_level = args.get("log-level");
    }

    validate_run_config(c, origin).check();

    FOT_CHECK(!c.model.empty(), args.command(),
              ": --model is required (or 'model:' in the --config YAML; see ", args.command(),
              " --help)");
    std::error_code ec;
    FOT_CHECK(fs::is_directory(c.model, ec), args.command(), ": model directory '", c.model,
              "' does not exist or is not a directory");
    fs::path config_json = fs::path(c.model) / "config.json";
    FOT_CHECK(fs::is_regular_file(config_json, ec), args.command(), ": model directory '", c.model,
              "' holds no config.json (expected a Hugging Face checkpoint folder)");
    return c;
}
}  // namespace

}  // namespace fot::cli
