#include "config/model_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace fot {

namespace {

using Json = nlohmann::json;

// Parse helpers throw ConfigError; parse_model_config() turns it into a Status. Keeping the
// field reads as straight-line code is worth the exception.
struct ConfigError {
    std::string message;
};

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
    throw ConfigError{origin + ": " + what};
}

std::string json_type(const Json& v) {
    if (v.is_number_integer()) return "integer " + v.dump();
    if (v.is_number_float()) return "number " + v.dump();
    std::string shown = v.dump();
    if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
    return std::string(v.type_name()) + " " + shown;
}

const Json* find(const Json& j, const char* key) {
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

void read_int(const Json& j, const char* key, const std::string& origin, int64_t* out) {
    const Json* v = find(j, key);
    if (!v) return;
    if (!v->is_number_integer()) {
        fail(origin, str(key, " must be an integer, got ", json_type(*v)));
    }
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)) {
        fail(origin, str(key, "=", v->dump(), " is too large"));
    }
    *out = v->get<int64_t>();
}

void read_double(const Json& j, const char* key, const std::string& origin, double* out) {
    const Json* v = find(j, key);
    if (!v) return;
    if (!v->is_number()) fail(origin, str(key, " must be a number, got ", json_type(*v)));
    *out = v->get<double>();
}

void read_bool(const Json& j, const char* key, const std::string& origin, bool* out) {
    const Json* v = find(j, key);
    if (!v) return;
    if (!v->is_boolean()) fail(origin, str(key, " must be true or false, got ", json_type(*v)));
    *out = v->get<bool>();
}

void read_string(const Json& j, const char* key, const std::string& origin, std::string* out,
                 bool null_ok = false) {
    const Json* v = find(j, key);
    if (!v) return;
    if (null_ok && v->is_null()) {
        out->clear();
        return;
    }
    if (!v->is_string()) fail(origin, str(key, " must be a string, got ", json_type(*v)));
    *out = v->get<std::string>();
}

// mem_dtype is resolved by the reference with getattr(torch, name): only torch spellings of
// the floating types it can store memory in are meaningful.
bool parse_mem_dtype(const std::string& s, DType* out) {
    if (s == "bfloat16" || s == "torch.bfloat16") {
        *out = DType::kBF16;
    } else if (s == "float32" || s == "float" || s == "torch.float32") {
        *out = DType::kF32;
    } else if (s == "float16" || s == "half" || s == "torch.float16") {
        *out = DType::kF16;
    } else {
        return false;
    }
    return true;
}

const char* mem_dtype_hf_name(DType t) {
    switch (t) {
        case DType::kBF16:
            return "bfloat16";
        case DType::kF16:
            return "float16";
        case DType::kF32:
            return "float32";
        default:
            return "?";
    }
}

ModelConfig parse_fields(const Json& j, const std::string& origin) {
    if (!j.is_object()) fail(origin, str("expected a JSON object, got ", j.type_name()));
    ModelConfig c;
    read_string(j, "model_type", origin, &c.model_type);
    if (c.model_type != "longllama" && c.model_type != "llama") {
        fail(origin, str("model_type \"", c.model_type,
                         "\" is not supported (expected \"longllama\" or \"llama\")"));
    }
    read_int(j, "vocab_size", origin, &c.vocab_size);
    read_int(j, "hidden_size", origin, &c.hidden_size);
    read_int(j, "intermediate_size", origin, &c.intermediate_size);
    read_int(j, "num_hidden_layers", origin, &c.num_hidden_layers);
    read_int(j, "num_attention_heads", origin, &c.num_attention_heads);
    read_int(j, "max_position_embeddings", origin, &c.max_position_embeddings);
    read_int(j, "last_context_length", origin, &c.last_context_length);
    read_double(j, "rms_norm_eps", origin, &c.rms_norm_eps);
    read_double(j, "rope_theta", origin, &c.rope_theta);
    read_string(j, "hidden_act", origin, &c.hidden_act);
    read_bool(j, "mem_positionals", origin, &c.mem_positionals);
    read_bool(j, "torch_attention", origin, &c.torch_attention);
    read_int(j, "gradient_checkpoint_every_ith", origin, &c.gradient_checkpoint_every_ith);
    read_int(j, "bos_token_id", origin, &c.bos_token_id);
    read_int(j, "eos_token_id", origin, &c.eos_token_id);
    if (const Json* v = find(j, "pad_token_id"); v && v->is_null()) {
        c.pad_token_id = -1;  // LLaMA configs may say null: no padding id
    } else {
        read_int(j, "pad_token_id", origin, &c.pad_token_id);
    }
    read_bool(j, "tie_word_embeddings", origin, &c.tie_word_embeddings);
    read_string(j, "torch_dtype", origin, &c.torch_dtype, /*null_ok=*/true);

    // Plain LLaMA configs may carry num_key_value_heads; LongLLaMA has no GQA.
    if (const Json* v = find(j, "num_key_value_heads"); v && !v->is_null()) {
        int64_t kv = 0;
        read_int(j, "num_key_value_heads", origin, &kv);
        if (kv != c.num_attention_heads) {
            fail(origin, str("num_key_value_heads=", kv,
                             " differs from num_attention_heads=", c.num_attention_heads,
                             ": grouped-query attention is not supported by LongLLaMA"));
        }
    }

    if (const Json* v = find(j, "rope_scaling"); v && !v->is_null()) {
        fail(origin, str("rope_scaling=", v->dump(),
                         " is not supported (LongLLaMA requires rope_scaling null)"));
    }

    if (const Json* v = find(j, "mem_layers")) {
        if (!v->is_array()) {
            fail(origin, str("mem_layers must be a list of layer indices, got ", json_type(*v)));
        }
        for (size_t i = 0; i < v->size(); ++i) {
            const Json& e = (*v)[i];
            if (!e.is_number_integer()) {
                fail(origin, str("mem_layers[", i, "] must be an integer, got ", json_type(e)));
            }
            c.mem_layers.push_back(e.get<int64_t>());
        }
        std::vector<int64_t> sorted = c.mem_layers;
        std::sort(sorted.begin(), sorted.end());
        auto dup = std::adjacent_find(sorted.begin(), sorted.end());
        if (dup != sorted.end()) {
            fail(origin, str("mem_layers lists layer ", *dup, " twice"));
        }
        c.mem_layers = sorted;  // the reference tests membership only, so order is free
    }

    if (const Json* v = find(j, "mem_dtype")) {
        if (!v->is_string()) {
            fail(origin, str("mem_dtype must be a string, got ", json_type(*v)));
        }
        if (!parse_mem_dtype(v->get<std::string>(), &c.mem_dtype)) {
            fail(origin, str("mem_dtype \"", v->get<std::string>(),
                             "\" is unknown (expected \"bfloat16\", \"float32\" or \"float16\")"));
        }
    }

    if (const Json* v = find(j, "mem_attention_grouping"); v && !v->is_null()) {
        bool ok = v->is_array() && v->size() == 2 && (*v)[0].is_number_integer() &&
                  (*v)[1].is_number_integer();
        if (!ok) {
            fail(origin, str("mem_attention_grouping must be null or [heads, queries], got ",
                             json_type(*v)));
        }
        c.mem_attention_grouping = std::make_pair((*v)[0].get<int64_t>(), (*v)[1].get<int64_t>());
    }
    return c;
}

}  // namespace

bool ModelConfig::is_mem_layer(int64_t layer) const {
    return std::binary_search(mem_layers.begin(), mem_layers.end(), layer);
}

int64_t ModelConfig::parameter_count() const {
    const int64_t h = hidden_size;
    const int64_t per_layer = 4 * h * h                    // q, k, v, o
                              + 3 * h * intermediate_size  // gate, up, down
                              + 2 * h;                     // two RMSNorm weights
    return vocab_size * h                                  // embed_tokens
           + num_hidden_layers * per_layer + h             // layers + final norm
           + (tie_word_embeddings ? 0 : vocab_size * h);   // lm_head
}

int64_t ModelConfig::memory_bytes_per_token(DType dtype) const {
    return 2 * hidden_size * static_cast<int64_t>(dtype_size(dtype)) *
           static_cast<int64_t>(mem_layers.size());
}

Status validate_model_config(const ModelConfig& c, const std::string& origin) {
    auto err = [&](const std::string& what) { return Status::error(origin + ": " + what); };
    const std::pair<const char*, int64_t> positive[] = {
        {"vocab_size", c.vocab_size},
        {"hidden_size", c.hidden_size},
        {"intermediate_size", c.intermediate_size},
        {"num_hidden_layers", c.num_hidden_layers},
        {"num_attention_heads", c.num_attention_heads},
        {"max_position_embeddings", c.max_position_embeddings},
        {"last_context_length", c.last_context_length},
    };
    for (const auto& [key, value] : positive) {
        if (value <= 0) return err(str(key, "=", value, " must be positive"));
    }
    if (c.hidden_size % c.num_attention_heads != 0) {
        return err(str("num_attention_heads=", c.num_attention_heads,
                       " does not divide hidden_size=", c.hidden_size));
    }
    if (c.head_dim() % 2 != 0) {
        return err(str("head_dim=", c.head_dim(), " (hidden_size=", c.hidden_size,
                       " / num_attention_heads=", c.num_attention_heads,
                       ") is odd; rotary embeddings rotate pairs of dimensions"));
    }
    if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps)) {
        return err(str("rms_norm_eps=", c.rms_norm_eps, " must be a positive number"));
    }
    if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) {
        return err(str("rope_theta=", c.rope_theta, " must be a positive number"));
    }
    if (c.hidden_act != "silu") {
        return err(
            str("hidden_act \"", c.hidden_act, "\" is not supported (LongLLaMA uses \"silu\")"));
    }
    if (c.last_context_length > c.max_position_embeddings) {
        return err(str("last_context_length=", c.last_context_length,
                       " exceeds max_position_embeddings=", c.max_position_embeddings,
                       ": the final window would hold more tokens than the window length W, "
                       "so RoPE positions would run past W; use last_context_length <= ",
                       c.max_position_embeddings));
    }
    if (c.tie_word_embeddings) {
        return err("tie_word_embeddings=true is not supported (LongLLaMA has a separate lm_head)");
    }
    for (size_t i = 0; i < c.mem_layers.size(); ++i) {
        int64_t l = c.mem_layers[i];
        if (l < 0 || l >= c.num_hidden_layers) {
            return err(str("mem_layers contains ", l,
                           ", outside [0, num_hidden_layers=", c.num_hidden_layers, ")"));
        }
        if (i > 0 && l <= c.mem_layers[i - 1]) {
            return err(str("mem_layers must be sorted and without duplicates (", l, " after ",
                           c.mem_layers[i - 1], ")"));
        }
    }
    if (c.mem_dtype != DType::kBF16 && c.mem_dtype != DType::kF32 && c.mem_dtype != DType::kF16) {
        return err(str("mem_dtype ", dtype_name(c.mem_dtype),
                       " is unknown (expected bfloat16, float32 or float16)"));
    }
    if (c.mem_attention_grouping) {
        auto [h, q] = *c.mem_attention_grouping;
        if (h <= 0 || q <= 0) {
            return err(str("mem_attention_grouping=[", h, ", ", q,
                           "] must hold two positive integers [heads, queries]"));
        }
    }
    const std::pair<const char*, int64_t> token_ids[] = {
        {"bos_token_id", c.bos_token_id},
        {"eos_token_id", c.eos_token_id},
    };
    for (const auto& [key, value] : token_ids) {
        if (value < 0 || value >= c.vocab_size) {
            return err(str(key, "=", value, " is outside [0, vocab_size=", c.vocab_size, ")"));
        }
    }
    if (c.pad_token_id < -1 || c.pad_token_id >= c.vocab_size) {
        return err(
            str("pad_token_id=", c.pad_token_id, " is outside [0, vocab_size=", c.vocab_size, ")"));
    }
    return Status::ok_status();
}

Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& origin) {
    Json j;
    try {
        j = Json::parse(json_text);
    } catch (const Json::parse_error& e) {
        return Status::error(str(origin, ": invalid JSON: ", e.what()));
    }
    ModelConfig c;
    try {
        c = parse_fields(j, origin);
    } catch (const ConfigError& e) {
        return Status::error(e.message);
    }
    Status s = validate_model_config(c, origin);
    if (!s.ok()) return s;
    return c;
}

Result<ModelConfig> load_model_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::error(str(path, ": cannot open model config (no such file?)"));
    std::ostringstream os;
    os << in.rdbuf();
    if (in.bad()) return Status::error(str(path, ": read error"));
    return parse_model_config(os.str(), path);
}

std::string model_config_to_json(const ModelConfig& c) {
    Json j = Json::object();  // std::map underneath: keys come out sorted
    j["architectures"] = Json::array({"LongLlamaForCausalLM"});
    j["model_type"] = c.model_type;
    j["vocab_size"] = c.vocab_size;
    j["hidden_size"] = c.hidden_size;
    j["intermediate_size"] = c.intermediate_size;
    j["num_hidden_layers"] = c.num_hidden_layers;
    j["num_attention_heads"] = c.num_attention_heads;
    j["max_position_embeddings"] = c.max_position_embeddings;
    j["last_context_length"] = c.last_context_length;
    j["rms_norm_eps"] = c.rms_norm_eps;
    j["rope_theta"] = c.rope_theta;
    j["rope_scaling"] = nullptr;
    j["hidden_act"] = c.hidden_act;
    j["mem_layers"] = c.mem_layers;
    j["mem_positionals"] = c.mem_positionals;
    j["mem_dtype"] = mem_dtype_hf_name(c.mem_dtype);
    if (c.mem_attention_grouping) {
        j["mem_attention_grouping"] =
            Json::array({c.mem_attention_grouping->first, c.mem_attention_grouping->second});
    } else {
        j["mem_attention_grouping"] = nullptr;
    }
    j["torch_attention"] = c.torch_attention;
    j["gradient_checkpoint_every_ith"] = c.gradient_checkpoint_every_ith;
    j["bos_token_id"] = c.bos_token_id;
    j["eos_token_id"] = c.eos_token_id;
    if (c.pad_token_id >= 0) {
        j["pad_token_id"] = c.pad_token_id;
    } else {
        j["pad_token_id"] = nullptr;
    }
    j["tie_word_embeddings"] = c.tie_word_embeddings;
    j["use_cache"] = true;
    if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
    return j.dump(2) + "\n";
}

}  // namespace fot
