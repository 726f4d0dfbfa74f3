#include "config/model_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "config/json_strict.h"
#include "runtime/core/host_memory.h"

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
            if (e.is_number_unsigned() && e.get<uint64_t>() > uint64_t(INT64_MAX)) {
                fail(origin, str("mem_layers[", i, "]=", e.dump(), " is too large"));
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
        auto small_int = [](const Json& e) {
            return e.is_number_integer() &&
                   !(e.is_number_unsigned() && e.get<uint64_t>() > uint64_t(INT64_MAX));
        };
        bool ok = v->is_array() && v->size() == 2 && small_int((*v)[0]) && small_int((*v)[1]);
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

namespace {

// a * b and a + b for sizes; throw instead of wrapping.
int64_t checked_mul(int64_t a, int64_t b, const char* what) {
    int64_t r = 0;
    FOT_CHECK(!__builtin_mul_overflow(a, b, &r), what, " overflows 64 bits");
    return r;
}
int64_t checked_add(int64_t a, int64_t b, const char* what) {
    int64_t r = 0;
    FOT_CHECK(!__builtin_add_overflow(a, b, &r), what, " overflows 64 bits");
    return r;
}

// Saturating a * b and a + b for non-negative sizes: a footprint estimate that only has to be
// compared with the machine's memory.
int64_t sat_mul(int64_t a, int64_t b) {
    int64_t r = 0;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
int64_t sat_mul(std::initializer_list<int64_t> xs) {
    int64_t r = 1;
    for (int64_t x : xs) r = sat_mul(r, x);
    return r;
}
int64_t sat_add(std::initializer_list<int64_t> xs) {
    int64_t r = 0;
    for (int64_t x : xs) {
        if (__builtin_add_overflow(r, x, &r)) return INT64_MAX;
    }
    return r;
}

}  // namespace

int64_t ModelConfig::parameter_count() const {
    const char* what = "the parameter count of this config";
    const int64_t h = hidden_size;
    // q, k, v, o + gate, up, down + two RMSNorm weights
    const int64_t per_layer = checked_add(
        checked_add(checked_mul(checked_mul(4, h, what), h, what),
                    checked_mul(checked_mul(3, h, what), intermediate_size, what), what),
        checked_mul(2, h, what), what);
    const int64_t embed = checked_mul(vocab_size, h, what);
    int64_t n = checked_add(embed, checked_mul(num_hidden_layers, per_layer, what), what);
    n = checked_add(n, h, what);                                   // final norm
    return tie_word_embeddings ? n : checked_add(n, embed, what);  // lm_head
}

int64_t ModelConfig::memory_bytes_per_token(DType dtype) const {
    const char* what = "the memory bytes per token of this config";
    return checked_mul(checked_mul(2 * static_cast<int64_t>(dtype_size(dtype)), hidden_size, what),
                       static_cast<int64_t>(mem_layers.size()), what);
}

ModelFootprint model_footprint(const ModelConfig& c, int64_t tp, int64_t mp, int64_t weight_bytes,
                               DType cache_dtype) {
    FOT_ASSERT(c.num_attention_heads > 0);
    tp = std::max<int64_t>(tp, 1);
    const int64_t W = c.max_position_embeddings, C = c.hidden_size, D = c.head_dim();
    const int64_t H = c.num_attention_heads / tp, I = c.intermediate_size / tp,
                  V = c.vocab_size / tp, L = c.num_hidden_layers;
    const int64_t M = static_cast<int64_t>(c.mem_layers.size());
    const int64_t f32 = 4, cache = static_cast<int64_t>(dtype_size(cache_dtype));
    ModelFootprint f;
    int64_t params = 0;
    try {
        params = c.parameter_count();
    } catch (const Error&) {
        params = INT64_MAX;
    }
    f.weights = sat_mul(params / tp, weight_bytes);
    f.window = sat_add({
        sat_mul({L, 2, H, W, D, cache}),  // local k_rot, v
        sat_mul({M, 2, W, H, D, f32}),    // memory layers' raw k, v
        sat_mul({W, f32,  // activations: x, xn, proj; q, k, v, attn; gate, up; partials
                 sat_add({sat_mul({3, C}), sat_mul({4, H, D}), sat_mul({2, I}),
                          sat_mul({H, sat_add({D, 2})})})}),
        sat_mul({W, V, f32}),  // logits of every row (scoring)
        mp > 1 && M > 0 ? sat_mul({mp, H, W, sat_add({D, 2}), f32}) : 0,  // memory gather
    });
    return f;
}

Status check_model_fits(const ModelConfig& c, const std::string& origin,
                        const ModelFootprint& per_rank, int64_t tp, int64_t ranks,
                        int64_t available, const std::string& available_what) {
    const int64_t one = sat_add({per_rank.weights, per_rank.window});
    const int64_t need = sat_mul(one, std::max<int64_t>(ranks, 1));
    if (need <= available) return Status::ok_status();
    const std::string sharing =
        ranks > 1 ? str(" x ", ranks, " ranks on this node = ", format_bytes(need)) : "";
    const std::string tail =
        str(", more than the ", format_bytes(available), " of ", available_what);
    if (per_rank.window >= per_rank.weights) {
        return Status::error(
            str(origin, ": max_position_embeddings=", c.max_position_embeddings, " needs ",
                format_bytes(per_rank.window),
                " per rank for the local caches and activations of one window (num_hidden_layers=",
                c.num_hidden_layers, ", hidden_size=", c.hidden_size, ", tp=", tp, ") plus ",
                format_bytes(per_rank.weights), " of weights", sharing, tail,
                "; lower max_position_embeddings (the window length) or split the model over more "
                "ranks (--tp) on more nodes"));
    }
    return Status::error(
        str(origin, ": the weights (vocab_size=", c.vocab_size, ", hidden_size=", c.hidden_size,
            ", intermediate_size=", c.intermediate_size,
            ", num_hidden_layers=", c.num_hidden_layers, ") need ", format_bytes(per_rank.weights),
            " per rank with tp=", tp, " plus ", format_bytes(per_rank.window), " for one window",
            sharing, tail, "; split the model over more ranks (--tp) on more nodes"));
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
    // Before any product of them is formed (see kMaxVocabSize).
    const std::tuple<const char*, int64_t, int64_t> bounded[] = {
        {"vocab_size", c.vocab_size, kMaxVocabSize},
        {"hidden_size", c.hidden_size, kMaxHiddenSize},
        {"intermediate_size", c.intermediate_size, kMaxIntermediateSize},
        {"num_hidden_layers", c.num_hidden_layers, kMaxHiddenLayers},
        {"max_position_embeddings", c.max_position_embeddings, kMaxPositionEmbeddings},
    };
    for (const auto& [key, value, bound] : bounded) {
        if (value > bound) {
            return err(str(key, "=", value, " is larger than fotrt supports (at most ", bound,
                           "); the file is corrupt or not a LongLLaMA config"));
        }
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
    if (std::string why; !try_parse_json_strict(json_text, &j, &why)) {
        return Status::error(str(origin, ": invalid JSON: ", why));
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
