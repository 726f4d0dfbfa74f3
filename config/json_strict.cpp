#include "config/json_strict.h"

#include <cstring>
#include <unordered_set>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/io/quote.h"

namespace fot {

namespace {

// nlohmann's message quotes the last token read, which can be megabytes long.
constexpr size_t kMaxReasonBytes = 300;

std::string short_reason(std::string what) {
    if (what.size() > kMaxReasonBytes) what = what.substr(0, kMaxReasonBytes) + "...";
    return escape_invalid_utf8(one_line(std::move(what)));
}

// First pass: syntax and duplicate keys, without building anything. (nlohmann's callback
// parser would do both in one pass, but it rescans the parent object each time a child
// object ends: quadratic in the number of tensors of a safetensors header.)
class DuplicateKeyCheck final : public nlohmann::json_sax<nlohmann::json> {
  public:
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override {
        open_.emplace_back();
        return true;
    }
    bool key(string_t& k) override {
        if (!open_.back().insert(k).second) {
            reason_ = "duplicate key " + safe_quote(k);
            return false;
        }
        return true;
    }
    bool end_object() override {
        open_.pop_back();
        return true;
    }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&,
                     const nlohmann::detail::exception& ex) override {
        std::string what = ex.what();
        // nlohmann messages start with "[json.exception.parse_error.101] "; keep the rest.
        auto close = what.find("] ");
        if (close != std::string::npos) what = what.substr(close + 2);
        reason_ = short_reason(std::move(what));
        return false;
    }
    const std::string& reason() const { return reason_; }

  private:
    std::vector<std::unordered_set<std::string>> open_;
    std::string reason_;
};

}  // namespace

bool try_parse_json_strict(std::string_view text, nlohmann::json* out, std::string* reason) {
    using nlohmann::json;
    if (const void* nul = std::memchr(text.data(), '\0', text.size())) {
        *reason = str("NUL byte at offset ", static_cast<const char*>(nul) - text.data());
        return false;
    }
    DuplicateKeyCheck check;
    if (!json::sax_parse(text.begin(), text.end(), &check)) {
        *reason = check.reason().empty() ? "invalid JSON" : check.reason();
        return false;
    }
    try {
        *out = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {  // not expected after the first pass
        *reason = short_reason(e.what());
        return false;
    }
    return true;
}

nlohmann::json parse_json_strict(std::string_view text, const std::string& origin) {
    nlohmann::json j;
    std::string reason;
    FOT_CHECK(try_parse_json_strict(text, &j, &reason), origin, ": invalid JSON: ", reason);
    return j;
}

}  // namespace fot
