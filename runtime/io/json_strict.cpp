#include "runtime/io/json_strict.h"

#include <set>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/io/quote.h"

namespace fot {

nlohmann::json parse_json_strict(std::string_view text, const std::string& origin) {
    using nlohmann::json;
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    auto on_event = [&](int /*depth*/, json::parse_event_t ev, json& value) {
        switch (ev) {
            case json::parse_event_t::object_start:
                open_objects.emplace_back();
                break;
            case json::parse_event_t::object_end:
                if (!open_objects.empty()) open_objects.pop_back();
                break;
            case json::parse_event_t::key:
                if (!open_objects.empty() && value.is_string() &&
                    !open_objects.back().insert(value.get<std::string>()).second &&
                    duplicate.empty()) {
                    duplicate = value.get<std::string>();
                }
                break;
            default:
                break;
        }
        return true;
    };
    json j;
    try {
        j = json::parse(text.begin(), text.end(), on_event);
    } catch (const json::exception& e) {
        std::string what = e.what();
        // nlohmann messages start with "[json.exception.parse_error.101] "; keep the rest.
        auto close = what.find("] ");
        if (close != std::string::npos) what = what.substr(close + 2);
        FOT_THROW(origin, ": invalid JSON: ", one_line(what));
    }
    FOT_CHECK(duplicate.empty(), origin, ": invalid JSON: duplicate key ", safe_quote(duplicate));
    return j;
}

}  // namespace fot
