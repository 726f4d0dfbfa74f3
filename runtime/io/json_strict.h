// Strict JSON parsing for checkpoint metadata (safetensors headers, index.json files).
//
// Same as nlohmann::json::parse, except that a duplicate key in any object is an error
// (nlohmann would silently keep the last one, which hides a corrupt or ambiguous header) and
// every failure is a one-line fot::Error starting with `origin`. Internal to fot_io.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace fot {

nlohmann::json parse_json_strict(std::string_view text, const std::string& origin);

}  // namespace fot
