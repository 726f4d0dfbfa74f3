#include "launch/args.h"

#include <iostream>
#include <sstream>

namespace fot::cli {

Args::Args(std::string command, std::string summary, std::vector<std::string> examples)
    : command_(std::move(command)), summary_(std::move(summary)), examples_(std::move(examples)) {
    declare({"help", "", "print this help and exit", "", "", false,
             [](const std::string&) { return std::string(); }});
}

void Args::declare(Declared d) {
    FOT_ASSERT(find(d.name) == nullptr);
    declared_.push_back(std::move(d));
}

const Args::Declared* Args::find(const std::string& name) const {
    for (const Declared& d : declared_) {
        if (d.name == name) return &d;
    }
    return nullptr;
}

void Args::usage_error(const std::string& what) const {
    FOT_THROW(command_, ": ", what);
}

bool Args::parse(const std::vector<std::string>& args) {
    const std::string see = " (see " + command_ + " --help)";
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "-h") {
            values_["help"] = "true";
            continue;
        }
        if (a.size() < 2 || a[0] != '-' || a == "--") {
            usage_error("unexpected argument '" + a + "' (the options all start with --; see " +
                        command_ + " --help)");
        }
        if (a[1] != '-') usage_error("unknown option '" + a + "'" + see);
        std::string name = a.substr(2);
        std::optional<std::string> value;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        const Declared* d = find(name);
        if (d == nullptr) usage_error("unknown option '--" + name + "'" + see);
        if (d->value_name.empty()) {
            if (value) usage_error("option --" + name + " takes no value" + see);
            values_[name] = "true";
            continue;
        }
        if (!value) {
            // "--ids --json" is a forgotten value, not an id file named "--json" (a value
            // that starts with -- can still be given as --ids=--json).
            if (i + 1 >= args.size() ||
                (args[i + 1].size() > 1 && args[i + 1][0] == '-' && args[i + 1][1] == '-')) {
                usage_error("option --" + name + " needs a value <" + d->value_name + ">" + see);
            }
            value = args[++i];
        }
        const std::string problem = d->check(*value);
        if (!problem.empty()) usage_error("--" + name + " " + problem);
        values_[name] = *value;
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

std::string Args::get(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? "" : it->second;
}

std::string Args::help() const {
    std::ostringstream os;
    os << "usage: " << command_ << " [options]\n\n" << summary_ << "\n\noptions:\n";
    for (const Declared& d : declared_) {
        std::string left = "  --" + d.name + (d.value_name.empty() ? "" : " " + d.value_name);
        os << left;
        if (left.size() < 28) {
            os << std::string(28 - left.size(), ' ');
        } else {
            os << "\n" << std::string(28, ' ');
        }
        os << d.help;
        if (d.required) {
            os << " (required)";
        } else if (!d.default_text.empty()) {
            os << " (default: " << d.default_text << ")";
        }
        os << "\n";
    }
    if (!examples_.empty()) {
        os << "\nexamples:\n";
        for (const auto& e : examples_) os << "  " << e << "\n";
    }
    return os.str();
}

}  // namespace fot::cli
