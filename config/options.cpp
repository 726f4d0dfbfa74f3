#include "config/options.h"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>

namespace fot {

namespace option_detail {

std::string quote(const std::string& s) {
    return "'" + s + "'";
}

std::string parse_integer(const std::string& text, const std::string& expected, int64_t* out) {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
        return "expects " + expected + ", got " + quote(text);
    }
    *out = v;
    return "";
}

std::string range_problem(const std::string& bound, const std::string& got) {
    return "must be " + bound + ", got " + got;
}

std::string integer_bound(int64_t min, int64_t max) {
    const bool has_min = min != INT64_MIN, has_max = max != INT64_MAX;
    if (has_min && has_max) return str("in [", min, ", ", max, "]");
    if (has_min) return str(">= ", min);
    if (has_max) return str("<= ", max);
    return "an integer";
}

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    if (s.empty()) return out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(item);
    if (s.back() == ',') out.push_back("");  // "2k," has an empty last item: an error
    return out;
}

}  // namespace option_detail

using option_detail::quote;
using option_detail::range_problem;

ValueType<std::string> text_value() {
    ValueType<std::string> t;
    t.expected = "a string";
    t.parse = [](const std::string& text, std::string* out) {
        *out = text;
        return std::string();
    };
    t.check = [](const std::string&) { return std::string(); };
    t.show = [](const std::string& s) { return s; };
    return t;
}

ValueType<bool> boolean_value() {
    return choice<bool>(
        "true or false",
        [](const std::string& s, bool* out) {
            if (s == "true" || s == "yes" || s == "on") {
                *out = true;
            } else if (s == "false" || s == "no" || s == "off") {
                *out = false;
            } else {
                return false;
            }
            return true;
        },
        [](const bool& b) { return std::string(b ? "true" : "false"); });
}

ValueType<std::string> string_choice(std::vector<std::string> names) {
    std::string expected;
    for (size_t i = 0; i < names.size(); ++i) {
        expected += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    }
    auto known = [names](const std::string& s) {
        for (const std::string& n : names) {
            if (n == s) return true;
        }
        return false;
    };
    return choice<std::string>(
        expected,
        [known](const std::string& s, std::string* out) {
            *out = s;
            return known(s);
        },
        [](const std::string& s) { return s; }, known);
}

ValueType<int64_t> positive_integer(int64_t max) {
    ValueType<int64_t> t = integer<int64_t>(1, max);
    t.expected = "a positive integer";
    const auto problem = [max](int64_t v) {
        if (v < 1) return range_problem("a positive integer", std::to_string(v));
        if (v > max) return range_problem(str("<= ", max), std::to_string(v));
        return std::string();
    };
    t.check = [problem](const int64_t& v) { return problem(v); };
    t.parse = [problem](const std::string& text, int64_t* out) {
        int64_t v = 0;
        std::string p = option_detail::parse_integer(text, "a positive integer", &v);
        if (p.empty()) p = problem(v);
        if (p.empty()) *out = v;
        return p;
    };
    return t;
}

namespace {

std::string show_real(double v) {
    std::ostringstream os;
    os << v;
    return os.str();
}

}  // namespace

ValueType<double> real(double min, double max, bool min_open, bool max_open) {
    const bool has_min = std::isfinite(min), has_max = std::isfinite(max);
    std::string bound;
    if (has_min && has_max) {
        bound = str("in ", min_open ? "(" : "[", show_real(min), ", ", show_real(max),
                    max_open ? ")" : "]");
    } else if (has_min) {
        bound = str(min_open ? "> " : ">= ", show_real(min));
    } else if (has_max) {
        bound = str(max_open ? "< " : "<= ", show_real(max));
    }
    auto problem = [=](double v) {
        const bool low = min_open ? !(v > min) : !(v >= min);
        const bool high = max_open ? !(v < max) : !(v <= max);
        return low || high ? range_problem(bound, show_real(v)) : std::string();
    };
    ValueType<double> t;
    t.expected = "a number";
    t.show = show_real;
    t.check = problem;
    t.parse = [problem](const std::string& text, double* out) {
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])) || *end != '\0' ||
            errno != 0 || !std::isfinite(v)) {
            return "expects a number, got " + quote(text);
        }
        std::string p = problem(v);
        if (p.empty()) *out = v;
        return p;
    };
    return t;
}

ValueType<int64_t> count(int64_t min) {
    const std::string expected = "a count like 65536, 64k or 1m";
    const std::string bound = option_detail::integer_bound(min, INT64_MAX);
    ValueType<int64_t> t;
    t.expected = expected;
    t.show = [](const int64_t& v) {
        if (v > 0 && v % (int64_t{1} << 20) == 0) return std::to_string(v >> 20) + "m";
        if (v > 0 && v % 1024 == 0) return std::to_string(v >> 10) + "k";
        return std::to_string(v);
    };
    t.check = [min, bound](const int64_t& v) {
        return v < min ? range_problem(bound, std::to_string(v)) : std::string();
    };
    t.parse = [min, bound, expected](const std::string& text, int64_t* out) {
        std::string digits = text;
        int64_t mult = 1;
        if (!digits.empty() && (digits.back() == 'k' || digits.back() == 'K')) {
            mult = 1024;
            digits.pop_back();
        } else if (!digits.empty() && (digits.back() == 'm' || digits.back() == 'M')) {
            mult = int64_t{1} << 20;
            digits.pop_back();
        }
        int64_t n = 0;
        if (!option_detail::parse_integer(digits, expected, &n).empty() || n < 0 ||
            __builtin_mul_overflow(n, mult, &n)) {
            return "expects " + expected + ", got " + quote(text);
        }
        if (n < min) return range_problem(bound, text);
        *out = n;
        return std::string();
    };
    return t;
}

ValueType<int64_t> byte_size(int64_t min) {
    const std::string bound = str(">= ", min);
    ValueType<int64_t> t;
    t.expected = "a byte size like 8GiB or 512MB";
    t.show = format_byte_size;
    t.check = [min, bound](const int64_t& v) {
        return v < min ? range_problem(bound, std::to_string(v)) : std::string();
    };
    t.parse = [min, bound](const std::string& text, int64_t* out) {
        Result<int64_t> r = parse_byte_size(text);
        if (!r.ok()) return "is an " + r.status().message();
        if (r.value() < min) return range_problem(bound, quote(text));
        *out = r.value();
        return std::string();
    };
    return t;
}

Result<int64_t> parse_byte_size(const std::string& s) {
    auto bad = [&](const char* why) {
        return Status::error(str("invalid byte size '", s, "' (", why,
                                 "; expected e.g. 1000000, 512MB, 1.5GB or 8GiB)"));
    };
    size_t i = 0;
    while (i < s.size() && s[i] == ' ') ++i;
    size_t num_begin = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    std::string number = s.substr(num_begin, i - num_begin);
    while (i < s.size() && s[i] == ' ') ++i;
    std::string unit;
    for (; i < s.size() && s[i] != ' '; ++i) {
        unit += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
    }
    while (i < s.size() && s[i] == ' ') ++i;
    if (number.empty() || i != s.size()) return bad("not a number followed by a unit");
    if (number.find('.') != number.rfind('.') || number == ".") return bad("malformed number");

    static const std::map<std::string, long double> kUnits = {
        {"", 1.0L},
        {"b", 1.0L},
        {"kb", 1e3L},
        {"mb", 1e6L},
        {"gb", 1e9L},
        {"tb", 1e12L},
        {"kib", 1024.0L},
        {"mib", 1048576.0L},
        {"gib", 1073741824.0L},
        {"tib", 1099511627776.0L},
    };
    auto u = kUnits.find(unit);
    if (u == kUnits.end()) return bad("unknown unit");
    long double value = std::strtold(number.c_str(), nullptr) * u->second;
    if (!(value < static_cast<long double>(std::numeric_limits<int64_t>::max()))) {
        return bad("too large");
    }
    // Fractions of a byte ("1.5B") round down; a byte budget is a ceiling.
    return static_cast<int64_t>(std::floor(value));
}

std::string format_byte_size(int64_t bytes) {
    // Largest unit that divides exactly, so the text parses back to the same count.
    static const std::pair<int64_t, const char*> kUnits[] = {
        {int64_t{1} << 40, "TiB"},
        {1000000000000, "TB"},
        {int64_t{1} << 30, "GiB"},
        {1000000000, "GB"},
        {int64_t{1} << 20, "MiB"},
        {1000000, "MB"},
        {1024, "KiB"},
        {1000, "KB"},
    };
    if (bytes > 0) {
        for (const auto& [mult, name] : kUnits) {
            if (bytes % mult == 0) return std::to_string(bytes / mult) + name;
        }
    }
    return std::to_string(bytes);
}

}  // namespace fot
