// fotrt inspect: what a model directory holds and what its memory costs, after validating
// the checkpoint against config.json (so a broken checkpoint is caught here, cheaply).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "config/model_config.h"
#include "config/run_config.h"
#include "launch/args.h"
#include "launch/commands.h"
#include "runtime/backend/backend.h"
#include "runtime/core/precision.h"
#include "runtime/core/status.h"
#include "runtime/io/checkpoint.h"
#include "runtime/jobs/session.h"
#include "runtime/model/weights.h"

namespace fot::cli {
namespace {

constexpr int64_t kBudgetsGiB[] = {8, 24, 80};

std::string join_ints(const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
}

// 1234567 -> "1.23 M"
std::string human_count(double n) {
    const char* units[] = {"", " K", " M", " B", " T"};
    int u = 0;
    while (n >= 1000 && u < 4) {
        n /= 1000;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.2f%s", n, units[u]);
    return buf;
}

// 1536 -> "1.50 KiB"
std::string human_bytes(double n) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) {
        n /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", n, units[u]);
    return buf;
}

std::string rope_str(double theta) {
    std::ostringstream os;
    os << theta;
    return os.str();
}

}  // namespace

namespace {

struct InspectCommand {
    std::string model;
    std::optional<DType> mem_dtype;  // unset: the config's
    int64_t tp = 1, mp = 1;
    bool json = false;
};

// What one rank of a tp x mp layout holds at its peak, at the precision a session picks for
// this checkpoint (fast for bf16/f16 linear weights, exact for f32). Memory (which grows
// with a document up to its capacity) is not counted.
struct RankPeak {
    Precision precision = Precision::kExact;
    ModelFootprint footprint;  // weights + window buffers (caches, activations, logits)
    int64_t cpu_host = 0;      // cpu backend: footprint + the loading threads' blocks
    int64_t cuda_device = 0;   // cuda backend: footprint, on the device
    int64_t cuda_host = 0;     // cuda backend: the pinned staging of the load
};

RankPeak rank_peak(const ModelConfig& c, const Checkpoint& ckpt, int64_t tp, int64_t mp) {
    for (auto [n, what] : {std::pair{c.num_attention_heads, "num_attention_heads"},
                           std::pair{c.intermediate_size, "intermediate_size"},
                           std::pair{c.vocab_size, "vocab_size"}}) {
        FOT_CHECK(n % tp == 0, "--tp ", tp, " does not divide ", what, "=", n);
    }
    const TensorRecord* q0 = ckpt.find("model.layers.0.self_attn.q_proj.weight");
    const DType wdt = q0 ? q0->dtype : DType::kF32;
    RankPeak r;
    r.precision = default_precision(wdt);
    const bool fast = r.precision == Precision::kFast;
    r.footprint = model_footprint(c, tp, mp, fast ? 2 : static_cast<int64_t>(dtype_size(wdt)),
                                  fast ? DType::kBF16 : DType::kF32);
    const int64_t both = r.footprint.weights + r.footprint.window;
    const int64_t threads = std::max(1u, std::thread::hardware_concurrency());
    r.cpu_host = both + threads * kLoadBlockBytes;
    r.cuda_device = both;
    r.cuda_host = 2 * static_cast<int64_t>(kUploadStagingBytes);
    return r;
}

const OptionTable<InspectCommand>& inspect_options() {
    static const OptionTable<InspectCommand> table = [] {
        OptionTable<InspectCommand> t;
        t.add(flag("model", "DIR", "model directory (config.json + safetensors or .bin weights)")
                  .must_be_given(),
              FOT_FIELD(model), text_value());
        t.add(flag("mem-dtype", "DTYPE", "dtype of stored memory: f32, bf16 or f16")
                  .default_is("the config's mem_dtype"),
              FOT_FIELD(mem_dtype),
              choice<DType>(
                  "f32, bf16 or f16",
                  [](const std::string& s, DType* out) { return parse_storage_dtype(s, out); },
                  [](const DType& d) { return std::string(dtype_name(d)); }));
        t.add(flag("tp", "N", "tensor-parallel ranks of the layout whose peak memory is shown"),
              FOT_FIELD(tp), integer<int64_t>(1, 4096));
        t.add(flag("mp", "N", "memory-parallel ranks of that layout"), FOT_FIELD(mp),
              integer<int64_t>(1, 4096));
        t.add(switch_flag("json", "print the same information as one JSON object"), FOT_FIELD(json),
              boolean_value());
        return t;
    }();
    return table;
}

}  // namespace

Args inspect_args() {
    Args args(
        "fotrt inspect",
        "Prints a model's configuration, its checkpoint format, tensor count, dtypes and\n"
        "parameter count, and what memory costs: bytes per memory token (keys and values\n"
        "of every memory layer) and how many memory tokens fit in 8, 24 and 80 GiB\n"
        "(memory only; weights and activations not counted), and the expected peak host and\n"
        "device memory of one rank of a --tp x --mp layout while loading and running (weights,\n"
        "local caches, one window of activations and logits; memory not counted). The\n"
        "checkpoint is validated against config.json first: a broken one is a one-line\n"
        "error and exit code 1.",
        {"fotrt inspect --model models/long_llama_3b",
         "fotrt inspect --model models/long_llama_3b --tp 2 --mp 2",
         "fotrt inspect --model models/long_llama_3b --mem-dtype f32 --json"});
    args.add(inspect_options());
    return args;
}

int cmd_inspect(const Argv& argv) {
    Args args = inspect_args();
    if (!args.parse(argv)) return 0;
    InspectCommand cmd;
    args.apply(inspect_options(), cmd);
    const std::string dir = cmd.model;
    std::error_code ec;
    FOT_CHECK(std::filesystem::is_directory(dir, ec), dir, ": no such model directory");

    const std::string config_path = (std::filesystem::path(dir) / "config.json").string();
    const ModelConfig c = load_model_config(config_path).value();
    const DType mem_dtype = cmd.mem_dtype.value_or(c.mem_dtype);

    std::unique_ptr<Checkpoint> ckpt = Checkpoint::open(dir);
    validate_llama_checkpoint(*ckpt, c);

    int64_t params = 0;
    size_t weight_bytes = 0;
    std::set<std::string> dtypes;
    for (const TensorRecord& t : ckpt->tensors()) {
        params += shape_numel(t.shape);
        weight_bytes += t.nbytes;
        dtypes.insert(dtype_name(t.dtype));
    }
    std::string dtype_list;
    for (const std::string& d : dtypes) dtype_list += (dtype_list.empty() ? "" : ", ") + d;
    const int64_t per_token = c.memory_bytes_per_token(mem_dtype);
    auto fit = [&](int64_t gib) { return per_token > 0 ? (gib << 30) / per_token : -1; };
    const RankPeak peak = rank_peak(c, *ckpt, cmd.tp, cmd.mp);

    if (cmd.json) {
        nlohmann::ordered_json j;
        j["model"] = dir;
        j["config"] = {{"num_hidden_layers", c.num_hidden_layers},
                       {"hidden_size", c.hidden_size},
                       {"num_attention_heads", c.num_attention_heads},
                       {"head_dim", c.head_dim()},
                       {"intermediate_size", c.intermediate_size},
                       {"vocab_size", c.vocab_size},
                       {"max_position_embeddings", c.max_position_embeddings},
                       {"last_context_length", c.last_context_length},
                       {"mem_layers", c.mem_layers},
                       {"mem_dtype", dtype_name(c.mem_dtype)},
                       {"rope_theta", c.rope_theta}};
        j["checkpoint"] = {{"format", ckpt->describe()},
                           {"tensors", ckpt->tensors().size()},
                           {"dtypes", dtypes},
                           {"bytes", weight_bytes}};
        j["parameters"] = params;
        j["mem_dtype"] = dtype_name(mem_dtype);
        j["memory_bytes_per_token"] = per_token;
        nlohmann::ordered_json fits = nlohmann::ordered_json::object();
        for (int64_t g : kBudgetsGiB) {
            // null: no memory layers, so memory never grows.
            fits[std::to_string(g) + "GiB"] =
                per_token > 0 ? nlohmann::ordered_json(fit(g)) : nlohmann::ordered_json();
        }
        j["memory_tokens_fit"] = fits;
        j["peak_per_rank"] = {{"tp", cmd.tp},
                              {"mp", cmd.mp},
                              {"precision", precision_name(peak.precision)},
                              {"weights_bytes", peak.footprint.weights},
                              {"window_bytes", peak.footprint.window},
                              {"cpu_host_bytes", peak.cpu_host},
                              {"cuda_device_bytes", peak.cuda_device},
                              {"cuda_host_bytes", peak.cuda_host}};
        std::cout << j.dump(2) << "\n";
        return 0;
    }

    std::ostringstream os;
    auto row = [&](const std::string& k, const std::string& v) {
        os << k << std::string(k.size() < 16 ? 16 - k.size() : 1, ' ') << v << "\n";
    };
    row("model", dir);
    row("layers", std::to_string(c.num_hidden_layers));
    row("hidden", std::to_string(c.hidden_size));
    row("heads", str(c.num_attention_heads, " x ", c.head_dim(), " (head_dim)"));
    row("intermediate", std::to_string(c.intermediate_size));
    row("vocab", std::to_string(c.vocab_size));
    row("W", str(c.max_position_embeddings, " (max_position_embeddings)"));
    row("lcl", str(c.last_context_length, " (last_context_length)"));
    row("mem_layers", join_ints(c.mem_layers));
    row("mem_dtype",
        str(dtype_name(mem_dtype),
            cmd.mem_dtype ? str(" (config: ", dtype_name(c.mem_dtype), ")") : std::string()));
    row("rope_theta", rope_str(c.rope_theta));
    row("checkpoint", str(ckpt->describe(), ", ", ckpt->tensors().size(), " tensors"));
    row("dtype", dtype_list);
    row("parameters", str(params, " (", human_count(static_cast<double>(params)), ")"));
    row("weight bytes",
        str(weight_bytes, " (", human_bytes(static_cast<double>(weight_bytes)), ")"));
    row("memory/token", str(per_token, " bytes (", c.mem_layers.size(), " memory layers x K,V x ",
                            c.hidden_size, " x ", dtype_name(mem_dtype), ")"));
    for (int64_t g : kBudgetsGiB) {
        row(str("fit ", g, " GiB"),
            per_token > 0
                ? str(fit(g), " memory tokens (", human_count(static_cast<double>(fit(g))), ")")
                : std::string("unbounded (no memory layers)"));
    }
    const auto hb = [](int64_t b) { return human_bytes(static_cast<double>(b)); };
    row("layout", str("tp ", cmd.tp, " x mp ", cmd.mp, ", precision ",
                      precision_name(peak.precision), " (as a session picks it)"));
    row("peak/rank cpu", str(hb(peak.cpu_host), " host (weights ", hb(peak.footprint.weights),
                             " + window ", hb(peak.footprint.window), " + load blocks)"));
    row("peak/rank cuda",
        str(hb(peak.cuda_device), " device, ", hb(peak.cuda_host), " host (pinned load staging)"));
    std::cout << os.str();
    return 0;
}

}  // namespace fot::cli
