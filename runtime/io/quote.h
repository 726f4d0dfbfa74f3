// safe_quote(): an untrusted string (a tensor name, a zip entry name, a pickle global) made safe
// for a one-line error message: control and non-ASCII bytes become \xNN, and very long
// strings are cut, so a corrupt file can never break the "one line per error" contract.
#pragma once

#include <string>
#include <string_view>

namespace fot {

inline std::string safe_quote(std::string_view s, size_t max_len = 200) {
    static const char* kHex = "0123456789abcdef";
    std::string out = "'";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i == max_len) {
            out += "...";
            break;
        }
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c >= 0x7f || c == '\'' || c == '\\') {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    out += "'";
    return out;
}

// Replaces line breaks so that a message stays on one line.
inline std::string one_line(std::string s) {
    for (char& c : s) {
        if (c == '\n' || c == '\r') c = ' ';
    }
    return s;
}

}  // namespace fot
