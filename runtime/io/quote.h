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

// `s` with every byte that is not part of a well-formed UTF-8 sequence (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF) written as the four characters \xNN; valid
// text comes back unchanged. For untrusted text that goes into JSON: the JSON writer rejects
// ill-formed UTF-8 (it throws), and escaping keeps the bytes visible where replacing them
// with U+FFFD would hide which ones they were.
inline std::string escape_invalid_utf8(std::string_view s) {
    static const char* kHex = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        size_t n = 0;  // length of the sequence that `c` starts, 0 if it starts none
        if (c < 0x80) {
            n = 1;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
        }
        bool ok = n > 0 && n <= s.size() - i;
        for (size_t k = 1; ok && k < n; ++k) {
            ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
        }
        if (ok && n >= 3) {
            const auto c1 = static_cast<unsigned char>(s[i + 1]);
            ok = !(c == 0xe0 && c1 < 0xa0)      // overlong 3-byte form
                 && !(c == 0xed && c1 > 0x9f)   // UTF-16 surrogate
                 && !(c == 0xf0 && c1 < 0x90)   // overlong 4-byte form
                 && !(c == 0xf4 && c1 > 0x8f);  // above U+10FFFF
        }
        if (ok) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 15];
            ++i;
        }
    }
    return out;
}

}  // namespace fot
