// The OpenAI-compatible request and response shapes of POST /v1/completions, kept apart
// from the HTTP plumbing so they can be tested (and read) alone.
//
// Requests are checked strictly: a field of the wrong type, a value out of range, an unknown
// field or a token id outside the vocabulary is an ApiError (HTTP 400) naming the field, in
// the OpenAI error shape {"error": {"message", "type", "param", "code"}}. Fields the OpenAI
// API has but this server does not implement (n > 1, penalties, logit_bias, suffix) are
// accepted only at their neutral values, so a client never gets silently ignored options.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/serve/engine.h"

namespace fot::serve {

// An error answered to the client: HTTP status and the OpenAI error fields.
struct ApiError : std::runtime_error {
    ApiError(int status, std::string message, std::string param = "",
             std::string code = "invalid_value", std::string type = "invalid_request_error")
        : std::runtime_error(message),
          status(status),
          param(std::move(param)),
          code(std::move(code)),
          type(std::move(type)) {}
    int status;
    std::string param, code, type;
    nlohmann::json body() const;
};

// What the request parser needs to know about the model.
struct ModelInfo {
    std::string name;  // the id /v1/models lists; a request's "model" must match it
    int64_t vocab_size = 0;
    int64_t max_tokens_limit = 4096;      // the most tokens one request may ask for
    int64_t max_prompt_tokens = 1 << 20;  // the longest prompt accepted
    // Tokenizes text (with BOS); empty when the model has no tokenizer.model.
    std::function<std::vector<int32_t>(const std::string&)> encode;
    // Detokenizes; empty when the model has no tokenizer (responses then carry only ids).
    std::function<std::string(const std::vector<int32_t>&)> decode;
};

struct CompletionRequest {
    CompletionParams params;
    bool stream = false;
    bool echo = false;
    std::optional<int64_t> logprobs;  // top alternatives per token; set = report logprobs
    std::vector<std::string> stop;    // stop strings (need a tokenizer)
    bool text_prompt = false;
};

// Parses and checks a POST /v1/sessions body ({"prompt": text or ids, "model": optional}):
// the document. Throws ApiError.
std::vector<int32_t> parse_session_request(const std::string& body, const ModelInfo& model);

// Parses and checks a POST /v1/completions body. Throws ApiError.
CompletionRequest parse_completion_request(const std::string& body, const ModelInfo& model);

// The error JSON text for a status with a generic message (404, 405, 413, ...).
std::string error_json(int status, const std::string& message, const std::string& code,
                       const std::string& param = "");

}  // namespace fot::serve
