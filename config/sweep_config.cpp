#include "config/sweep_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "config/options.h"

namespace fot {

namespace {

struct Reader {
    std::string origin;
    [[noreturn]] void fail(const std::string& key, const std::string& what) const {
        FOT_THROW(origin, ": ", key, " ", what);
    }
    std::string scalar(const YAML::Node& n, const std::string& key) const {
        if (!n.IsScalar()) fail(key, "must be a plain value");
        return n.Scalar();
    }
    // A scalar or a list of scalars.
    std::vector<std::string> list(const YAML::Node& n, const std::string& key) const {
        std::vector<std::string> out;
        if (n.IsSequence()) {
            for (size_t i = 0; i < n.size(); ++i) {
                out.push_back(scalar(n[i], key + "[" + std::to_string(i) + "]"));
            }
        } else {
            out.push_back(scalar(n, key));
        }
        if (out.empty()) fail(key, "needs at least one value");
        return out;
    }
    int64_t count(const std::string& text, const std::string& key, int64_t min) const {
        int64_t v = 0;
        const ValueType<int64_t> t = fot::count(min);
        std::string p = t.parse(text, &v);
        if (p.empty()) p = t.check(v);
        if (!p.empty()) fail(key, p);
        return v;
    }
    int64_t integer(const std::string& text, const std::string& key, int64_t min) const {
        int64_t v = 0;
        const ValueType<int64_t> t = fot::integer<int64_t>(min);
        std::string p = t.parse(text, &v);
        if (p.empty()) p = t.check(v);
        if (!p.empty()) fail(key, p);
        return v;
    }
};

}  // namespace

bool builtin_model_shape(const std::string& name, ModelConfig* out) {
    ModelConfig c;  // the defaults are the 3B values (model_config.h)
    if (name == "3b") {
        c.mem_layers = {6, 12, 18};
    } else if (name == "7b") {
        c.hidden_size = 4096;
        c.num_hidden_layers = 32;
        c.num_attention_heads = 32;
        c.intermediate_size = 11008;
        c.vocab_size = 32016;
        c.max_position_embeddings = 4096;
        c.last_context_length = 3072;
        c.rope_theta = 1e6;
        c.mem_layers = {8, 16, 24};
    } else if (name == "tiny") {
        // Small enough for CI on two cores, large enough that its phases last milliseconds.
        c.hidden_size = 256;
        c.num_hidden_layers = 4;
        c.num_attention_heads = 4;
        c.intermediate_size = 688;
        c.vocab_size = 1024;
        c.max_position_embeddings = 512;
        c.last_context_length = 256;
        c.mem_layers = {1, 3};
    } else {
        return false;
    }
    c.mem_dtype = DType::kBF16;
    *out = c;
    return true;
}

Result<SweepConfig> parse_sweep_config(const std::string& yaml_text, const std::string& origin) {
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
        return Status::error(origin + ": not valid YAML: " + e.what());
    }
    if (!root.IsMap()) return Status::error(origin + ": expected a mapping of sweep keys");
    SweepConfig s;
    Reader r{origin};
    static const std::set<std::string> keys = {
        "model",         "shape",        "weights",   "backend", "precision", "threads",
        "memory_tokens", "query_tokens", "retrieval", "k",       "layouts",   "repeats",
        "calibration",   "clock",        "statistic", "rounds"};
    try {
        for (const auto& kv : root) {
            const std::string key = kv.first.as<std::string>();
            if (!keys.count(key)) r.fail(key, "is not a sweep key (see docs/scaling.md)");
        }
        if (root["model"]) s.model_name = r.scalar(root["model"], "model");
        if (!builtin_model_shape(s.model_name, &s.model)) {
            Result<ModelConfig> c = load_model_config(s.model_name + "/config.json");
            if (!c.ok()) {
                r.fail("model", "'" + s.model_name +
                                    "' is neither tiny, 3b, 7b nor a model "
                                    "folder: " +
                                    c.status().message());
            }
            s.model = c.value();
        }
        if (const YAML::Node shape = root["shape"]) {
            if (!shape.IsMap()) r.fail("shape", "must be a mapping of HF config keys");
            for (const auto& kv : shape) {
                const std::string k = kv.first.as<std::string>(), key = "shape." + k;
                if (k == "mem_layers") {
                    s.model.mem_layers.clear();
                    if (!kv.second.IsSequence()) r.fail(key, "must be a list of layer indices");
                    for (size_t i = 0; i < kv.second.size(); ++i) {
                        s.model.mem_layers.push_back(
                            r.integer(r.scalar(kv.second[i], key), key, 0));
                    }
                    continue;
                }
                const int64_t v = r.integer(r.scalar(kv.second, key), key, 1);
                if (k == "hidden_size")
                    s.model.hidden_size = v;
                else if (k == "num_hidden_layers")
                    s.model.num_hidden_layers = v;
                else if (k == "num_attention_heads")
                    s.model.num_attention_heads = v;
                else if (k == "intermediate_size")
                    s.model.intermediate_size = v;
                else if (k == "vocab_size")
                    s.model.vocab_size = v;
                else if (k == "max_position_embeddings")
                    s.model.max_position_embeddings = v;
                else
                    r.fail(key,
                           "is not a shape key (hidden_size, num_hidden_layers, "
                           "num_attention_heads, intermediate_size, vocab_size, "
                           "max_position_embeddings, mem_layers)");
            }
            s.model.last_context_length =
                std::min(s.model.last_context_length, s.model.max_position_embeddings);
        }
        Status v = validate_model_config(s.model, origin + ": model");
        if (!v.ok()) return v;
        if (root["weights"]) {
            const std::string w = r.scalar(root["weights"], "weights");
            if (!parse_compute_dtype(w, &s.weights))
                r.fail("weights", "must be f32 or bf16, not '" + w + "'");
        }
        if (root["backend"]) {
            s.backends = r.list(root["backend"], "backend");
            for (const std::string& b : s.backends) {
                if (b != "cpu" && b != "cuda")
                    r.fail("backend", "must be cpu or cuda, not '" + b + "'");
            }
        }
        if (root["precision"]) {
            s.precisions.clear();
            for (const std::string& p : r.list(root["precision"], "precision")) {
                Precision x;
                if (!parse_precision(p, &x))
                    r.fail("precision", "must be exact or fast, not '" + p + "'");
                s.precisions.push_back(x);
            }
        }
        if (root["threads"])
            s.threads = int(r.integer(r.scalar(root["threads"], "threads"), "threads", 0));
        const int64_t W = s.model.max_position_embeddings;
        if (root["memory_tokens"]) {
            s.memory_tokens.clear();
            for (const std::string& t : r.list(root["memory_tokens"], "memory_tokens")) {
                s.memory_tokens.push_back(r.count(t, "memory_tokens", 0));
            }
        }
        if (root["query_tokens"]) {
            s.query_tokens.clear();
            for (const std::string& t : r.list(root["query_tokens"], "query_tokens")) {
                const int64_t q = r.count(t, "query_tokens", 1);
                if (q > W)
                    r.fail("query_tokens",
                           "must be at most the window W=" + std::to_string(W) + ", got " + t);
                s.query_tokens.push_back(q);
            }
        }
        if (root["retrieval"]) {
            s.retrievals.clear();
            for (const std::string& t : r.list(root["retrieval"], "retrieval")) {
                Retrieval x;
                if (!parse_retrieval(t, &x))
                    r.fail("retrieval", "must be dense or topk, not '" + t + "'");
                s.retrievals.push_back(x);
            }
        }
        if (root["k"]) {
            s.ks.clear();
            for (const std::string& t : r.list(root["k"], "k")) s.ks.push_back(r.count(t, "k", 1));
        }
        if (const YAML::Node l = root["layouts"]) {
            if (!l.IsSequence() || l.size() == 0)
                r.fail("layouts", "must be a list like [{tp: 1, mp: 2, dp: 1}]");
            s.layouts.clear();
            for (size_t i = 0; i < l.size(); ++i) {
                const std::string key = "layouts[" + std::to_string(i) + "]";
                if (!l[i].IsMap()) r.fail(key, "must be a mapping like {tp: 1, mp: 2, dp: 1}");
                SweepLayout x;
                for (const auto& kv : l[i]) {
                    const std::string k = kv.first.as<std::string>();
                    const int v =
                        int(r.integer(r.scalar(kv.second, key + "." + k), key + "." + k, 1));
                    if (k == "tp")
                        x.tp = v;
                    else if (k == "mp")
                        x.mp = v;
                    else if (k == "dp")
                        x.dp = v;
                    else
                        r.fail(key + "." + k, "is not tp, mp or dp");
                }
                s.layouts.push_back(x);
            }
        }
        if (root["repeats"]) {
            const int64_t v = r.integer(r.scalar(root["repeats"], "repeats"), "repeats", 1);
            if (v > 100000) r.fail("repeats", "must be at most 100000, got " + std::to_string(v));
            s.repeats = int(v);
        }
        if (root["clock"]) {
            const std::string c = r.scalar(root["clock"], "clock");
            if (c != "wall" && c != "cpu") r.fail("clock", "must be wall or cpu, not '" + c + "'");
            s.cpu_clock = c == "cpu";
        }
        if (root["rounds"]) {
            const int64_t v = r.integer(r.scalar(root["rounds"], "rounds"), "rounds", 1);
            if (v > 1000) r.fail("rounds", "must be at most 1000, got " + std::to_string(v));
            s.rounds = int(v);
        }
        if (root["statistic"]) {
            const std::string c = r.scalar(root["statistic"], "statistic");
            if (c != "median" && c != "min")
                r.fail("statistic", "must be median or min, not '" + c + "'");
            s.use_min = c == "min";
        }
        if (const YAML::Node c = root["calibration"]) {
            if (!c.IsMap())
                r.fail("calibration", "must be a mapping {memory_tokens: N, query_tokens: N}");
            for (const auto& kv : c) {
                const std::string k = kv.first.as<std::string>(), key = "calibration." + k;
                if (k == "memory_tokens")
                    s.calibration_memory = r.count(r.scalar(kv.second, key), key, 1);
                else if (k == "query_tokens")
                    s.calibration_query = r.count(r.scalar(kv.second, key), key, 1);
                else
                    r.fail(key, "is not memory_tokens or query_tokens");
            }
            if (s.calibration_query > W)
                r.fail("calibration.query_tokens", "must be at most W=" + std::to_string(W));
        }
    } catch (const Error& e) {
        return Status::error(e.what());
    } catch (const YAML::Exception& e) {
        return Status::error(origin + ": " + e.what());
    }
    return s;
}

Result<SweepConfig> load_sweep_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) return Status::error(path + ": cannot open the sweep file");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_sweep_config(ss.str(), path);
}

}  // namespace fot
