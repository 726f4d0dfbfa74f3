// Strict JSON parsing for everything fotrt reads as JSON from a file: checkpoint metadata
// (safetensors headers, index.json), config.json, --ids files and JSONL records.
//
// Same as nlohmann::json::parse, except that
//  - a duplicate key in any object is an error (nlohmann would silently keep the last one,
//    which hides a corrupt or ambiguous file);
//  - a NUL byte anywhere is an error (nlohmann stops at a NUL as if the text ended there, so
//    "{...}\0junk" would be accepted);
//  - the message is one line, at most a few hundred bytes (nlohmann quotes the last token it
//    read, which for a hostile input can be the whole file), with invalid UTF-8 shown as \xNN.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace fot {

// Throws fot::Error "ORIGIN: invalid JSON: REASON".
nlohmann::json parse_json_strict(std::string_view text, const std::string& origin);

// Returns false and sets *reason ("duplicate key 'a'", "syntax error ...") on failure; for
// callers that turn a bad text into an error record rather than an exception.
bool try_parse_json_strict(std::string_view text, nlohmann::json* out, std::string* reason);

}  // namespace fot
