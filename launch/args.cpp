#include "launch/args.h"

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "runtime/core/status.h"

namespace fot::cli {

Args::Args(std::string command, std::string summary, std::vector<std::string> examples)
    : command_(std::move(command)), summary_(std::move(summary)), examples_(std::move(examples)) {
    flag("help", "print this help and exit");
}

void Args::option(const std::string& name, const std::string& value_name, const std::string& help,
                  const std::string& default_text) {
    if (!opts_.count(name)) order_.push_back(name);
    opts_[name] = Opt{value_name, help, default_text};
}

bool Args::parse(const std::vector<std::string>& args) {
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a.rfind("--", 0) != 0 || a.size() == 2) {
            positional_.push_back(a);
            continue;
        }
        std::string name = a.substr(2);
        std::optional<std::string> value;
        auto eq = name.find('=');
        if (eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        auto it = opts_.find(name);
        FOT_CHECK(it != opts_.end(), command_, ": unknown option --", name, " (see ", command_,
                  " --help)");
        if (it->second.value_name.empty()) {
            FOT_CHECK(!value, command_, ": option --", name, " takes no value");
            values_[name] = "1";
        } else {
            if (!value) {
                FOT_CHECK(i + 1 < args.size(), command_, ": option --", name, " needs a value <",
                          it->second.value_name, ">");
                value = args[++i];
            }
            values_[name] = *value;
        }
    }
    if (has("help")) {
        std::cout << help();
        return false;
    }
    return true;
}

bool Args::has(const std::string& name) const {
    return values_.count(name) > 0;
}

std::string Args::get(const std::string& name, const std::string& def) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : it->second;
}

std::string Args::require(const std::string& name) const {
    FOT_CHECK(has(name), command_, ": --", name, " is required (see ", command_, " --help)");
    return get(name);
}

std::optional<int64_t> Args::get_int_opt(const std::string& name) const {
    if (!has(name)) return std::nullopt;
    const std::string s = get(name);
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    FOT_CHECK(!s.empty() && end && *end == '\0' && errno == 0, command_, ": --", name,
              " expects an integer, got '", s, "'");
    return v;
}

int64_t Args::get_int(const std::string& name, int64_t def) const {
    return get_int_opt(name).value_or(def);
}

double Args::get_double(const std::string& name, double def) const {
    if (!has(name)) return def;
    const std::string s = get(name);
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    FOT_CHECK(!s.empty() && end && *end == '\0' && errno == 0, command_, ": --", name,
              " expects a number, got '", s, "'");
    return v;
}

std::string Args::help() const {
    std::ostringstream os;
    os << "usage: " << command_ << " [options]\n\n" << summary_ << "\n\noptions:\n";
    for (const auto& name : order_) {
        const Opt& o = opts_.at(name);
        std::string left = "  --" + name + (o.value_name.empty() ? "" : " " + o.value_name);
        os << left;
        if (left.size() < 28) {
            os << std::string(28 - left.size(), ' ');
        } else {
            os << "\n" << std::string(28, ' ');
        }
        os << o.help;
        if (!o.default_text.empty()) os << " (default: " << o.default_text << ")";
        os << "\n";
    }
    if (!examples_.empty()) {
        os << "\nexamples:\n";
        for (const auto& e : examples_) os << "  " << e << "\n";
    }
    return os.str();
}

int64_t parse_count(const std::string& text, const std::string& what) {
    FOT_CHECK(!text.empty(), what, ": empty count");
    std::string digits = text;
    int64_t mult = 1;
    char last = digits.back();
    if (last == 'k' || last == 'K') {
        mult = 1024;
        digits.pop_back();
    } else if (last == 'm' || last == 'M') {
        mult = 1024 * 1024;
        digits.pop_back();
    }
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(digits.c_str(), &end, 10);
    FOT_CHECK(!digits.empty() && end && *end == '\0' && errno == 0 && v > 0, what,
              ": expected a positive count like 4096, 4k or 1m, got '", text, "'");
    return v * mult;
}

}  // namespace fot::cli
