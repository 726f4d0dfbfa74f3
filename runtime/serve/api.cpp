#include "runtime/serve/api.h"

#include <set>

namespace fot::serve {

using nlohmann::json;

json ApiError::body() const {
    json e;
    e["message"] = what();
    e["type"] = type;
    e["param"] = param.empty() ? json(nullptr) : json(param);
    e["code"] = code;
    return json{{"error", e}};
}

std::string error_json(int status, const std::string& message, const std::string& code,
                       const std::string& param) {
    return ApiError(status, message, param, code).body().dump();
}

namespace {

ApiError bad(const std::string& param, const std::string& what,
             const std::string& code = "invalid_value") {
    return ApiError(400, "'" + param + "' " + what, param, code);
}

int64_t get_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
    if (!v.is_number_integer() && !v.is_number_unsigned())
        throw bad(name, "must be an integer", "invalid_type");
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        throw bad(name, "is out of range");
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi)
        throw bad(name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            "], got " + std::to_string(x));
    return x;
}

double get_number(const json& v, const std::string& name, double lo, double hi, bool lo_open) {
    if (!v.is_number()) throw bad(name, "must be a number", "invalid_type");
    const double x = v.get<double>();
    if (!(lo_open ? x > lo : x >= lo) || !(x <= hi)) {
        throw bad(name, std::string("must be in ") + (lo_open ? "(" : "[") + std::to_string(lo) +
                            ", " + std::to_string(hi) + "], got " + v.dump());
    }
    return x;
}

bool get_bool(const json& v, const std::string& name) {
    if (!v.is_boolean()) throw bad(name, "must be a boolean", "invalid_type");
    return v.get<bool>();
}

std::vector<int32_t> get_ids(const json& a, const ModelInfo& m) {
    std::vector<int32_t> ids;
    for (const json& x : a) {
        if (!x.is_number_integer() && !x.is_number_unsigned())
            throw bad("prompt", "must be a string or a list of token ids", "invalid_type");
        const int64_t id =
            x.is_number_unsigned() && x.get<uint64_t>() > INT64_MAX ? INT64_MAX : x.get<int64_t>();
        if (id < 0 || id >= m.vocab_size)
            throw bad("prompt", "has token id " + std::to_string(id) +
                                    " outside the vocabulary [0, " + std::to_string(m.vocab_size) +
                                    ")");
        ids.push_back(static_cast<int32_t>(id));
    }
    return ids;
}

std::vector<int32_t> get_prompt(const json& p, const ModelInfo& m, bool* text) {
    *text = false;
    if (p.is_string()) {
        if (!m.encode)
            throw bad("prompt",
                      "is text but this model has no tokenizer.model: send a list of token ids",
                      "tokenizer_unavailable");
        *text = true;
        return m.encode(p.get<std::string>());
    }
    if (!p.is_array())
        throw bad("prompt", "must be a string or a list of token ids", "invalid_type");
    // The OpenAI API also takes a batch: a list of strings or of id lists. One prompt per
    // request here; a batch of one is unwrapped.
    if (!p.empty() && (p[0].is_string() || p[0].is_array())) {
        if (p.size() != 1) throw bad("prompt", "must hold one prompt (batches are not supported)");
        return get_prompt(p[0], m, text);
    }
    return get_ids(p, m);
}

json parse_object(const std::string& body) {
    json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded())
        throw ApiError(400, "the request body is not valid JSON", "", "invalid_json");
    if (!j.is_object())
        throw ApiError(400, "the request body must be a JSON object", "", "invalid_type");
    return j;
}

void check_model(const json& j, const ModelInfo& m) {
    if (!j.contains("model") || j["model"].is_null()) return;
    if (!j["model"].is_string()) throw bad("model", "must be a string", "invalid_type");
    if (j["model"].get<std::string>() != m.name)
        throw ApiError(404, "the model '" + j["model"].get<std::string>() + "' does not exist",
                       "model", "model_not_found");
}

}  // namespace

std::vector<int32_t> parse_session_request(const std::string& body, const ModelInfo& m) {
    json j = parse_object(body);
    for (const auto& [key, value] : j.items()) {
        if (key != "prompt" && key != "model")
            throw ApiError(400, "unrecognized request argument supplied: " + key, key,
                           "unknown_parameter");
    }
    check_model(j, m);
    if (!j.contains("prompt") || j["prompt"].is_null())
        throw bad("prompt", "is required", "missing_required_parameter");
    bool text = false;
    std::vector<int32_t> ids = get_prompt(j["prompt"], m, &text);
    if (ids.empty()) throw bad("prompt", "must not be empty");
    if (static_cast<int64_t>(ids.size()) > m.max_prompt_tokens)
        throw bad("prompt", "has " + std::to_string(ids.size()) + " tokens, more than the limit " +
                                std::to_string(m.max_prompt_tokens));
    return ids;
}

CompletionRequest parse_completion_request(const std::string& body, const ModelInfo& m) {
    json j = parse_object(body);
    static const std::set<std::string> known = {"model",
                                                "prompt",
                                                "max_tokens",
                                                "temperature",
                                                "top_p",
                                                "seed",
                                                "stop",
                                                "stream",
                                                "echo",
                                                "logprobs",
                                                "ignore_eos",
                                                "n",
                                                "best_of",
                                                "presence_penalty",
                                                "frequency_penalty",
                                                "logit_bias",
                                                "user",
                                                "suffix",
                                                "stream_options",
                                                "session"};
    for (const auto& [key, value] : j.items()) {
        if (!known.count(key))
            throw ApiError(400, "unrecognized request argument supplied: " + key, key,
                           "unknown_parameter");
    }
    CompletionRequest r;
    auto has = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
    check_model(j, m);
    if (has("session")) {
        if (!j["session"].is_string()) throw bad("session", "must be a string", "invalid_type");
        r.params.session = j["session"].get<std::string>();
    }
    if (!has("prompt")) throw bad("prompt", "is required", "missing_required_parameter");
    r.params.prompt = get_prompt(j["prompt"], m, &r.text_prompt);
    if (r.params.prompt.empty()) throw bad("prompt", "must not be empty");
    if (static_cast<int64_t>(r.params.prompt.size()) > m.max_prompt_tokens)
        throw bad("prompt", "has " + std::to_string(r.params.prompt.size()) +
                                " tokens, more than the limit " +
                                std::to_string(m.max_prompt_tokens));
    if (has("max_tokens"))
        r.params.max_tokens = get_int(j["max_tokens"], "max_tokens", 1, m.max_tokens_limit);
    // OpenAI's default temperature is 1; `fotrt generate`'s is greedy. A request that wants
    // sampling says so; the default here is greedy so that equal requests give equal answers.
    if (has("temperature"))
        r.params.sampling.temperature = get_number(j["temperature"], "temperature", 0, 2, false);
    if (has("top_p")) r.params.sampling.top_p = get_number(j["top_p"], "top_p", 0, 1, true);
    if (has("seed"))
        r.params.sampling.seed = static_cast<uint64_t>(get_int(j["seed"], "seed", 0, INT64_MAX));
    if (has("stream")) r.stream = get_bool(j["stream"], "stream");
    if (has("echo")) r.echo = get_bool(j["echo"], "echo");
    if (has("ignore_eos")) r.params.ignore_eos = get_bool(j["ignore_eos"], "ignore_eos");
    if (has("logprobs")) {
        r.logprobs = get_int(j["logprobs"], "logprobs", 0, 5);
        r.params.top_logprobs = *r.logprobs;
    }
    if (has("stop")) {
        const json& s = j["stop"];
        if (s.is_string()) {
            r.stop.push_back(s.get<std::string>());
        } else if (s.is_array()) {
            if (s.size() > 4) throw bad("stop", "takes at most 4 strings");
            for (const json& x : s) {
                if (!x.is_string())
                    throw bad("stop", "must be a string or a list of strings", "invalid_type");
                r.stop.push_back(x.get<std::string>());
            }
        } else {
            throw bad("stop", "must be a string or a list of strings", "invalid_type");
        }
        for (const std::string& x : r.stop)
            if (x.empty()) throw bad("stop", "must not hold an empty string");
        if (!r.stop.empty() && !m.encode)
            throw bad("stop", "needs a tokenizer: this model has no tokenizer.model",
                      "tokenizer_unavailable");
    }
    if (has("n") && get_int(j["n"], "n", 1, 1) != 1) {
    }
    if (has("best_of") && get_int(j["best_of"], "best_of", 1, 1) != 1) {
    }
    for (const char* k : {"presence_penalty", "frequency_penalty"}) {
        if (has(k) && get_number(j[k], k, -2, 2, false) != 0.0)
            throw bad(k, "is not supported (only 0)", "unsupported_value");
    }
    if (has("logit_bias")) {
        if (!j["logit_bias"].is_object())
            throw bad("logit_bias", "must be an object", "invalid_type");
        if (!j["logit_bias"].empty())
            throw bad("logit_bias", "is not supported", "unsupported_value");
    }
    if (has("user") && !j["user"].is_string())
        throw bad("user", "must be a string", "invalid_type");
    if (has("suffix")) throw bad("suffix", "is not supported", "unsupported_value");
    if (has("stream_options") && !j["stream_options"].is_object())
        throw bad("stream_options", "must be an object", "invalid_type");
    return r;
}

}  // namespace fot::serve
