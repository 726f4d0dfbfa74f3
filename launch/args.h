// A small command-line parser for the fotrt subcommands.
//
// Accepts "--name value", "--name=value" and boolean "--name". Every option is declared with
// its help text, so `--help` output and "unknown option" errors come from one table.
// Errors throw fot::Error with a one-line message that names the option and the command.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fot::cli {

class Args {
  public:
    // `command` is e.g. "fotrt logits"; `summary` one line; `examples` printed by --help.
    Args(std::string command, std::string summary, std::vector<std::string> examples = {});

    // Declares options before parse(). `value_name` empty = boolean flag.
    void option(const std::string& name, const std::string& value_name, const std::string& help,
                const std::string& default_text = "");
    void flag(const std::string& name, const std::string& help) { option(name, "", help); }

    // Parses args (without the program and subcommand names). Returns false when --help was
    // given (help is printed to stdout); throws fot::Error on bad usage.
    bool parse(const std::vector<std::string>& args);

    bool has(const std::string& name) const;
    std::string get(const std::string& name, const std::string& def = "") const;
    // Throws "fotrt logits: --model is required (see --help)" when absent.
    std::string require(const std::string& name) const;
    int64_t get_int(const std::string& name, int64_t def) const;
    double get_double(const std::string& name, double def) const;
    std::optional<int64_t> get_int_opt(const std::string& name) const;
    const std::vector<std::string>& positional() const { return positional_; }

    std::string help() const;
    const std::string& command() const { return command_; }

  private:
    struct Opt {
        std::string value_name, help, default_text;
    };
    std::string command_, summary_;
    std::vector<std::string> examples_;
    std::vector<std::string> order_;
    std::map<std::string, Opt> opts_;
    std::map<std::string, std::string> values_;
    std::vector<std::string> positional_;
};

// Parses "4k", "32K", "1m", "128000" into a count (k = 1024, m = 1024*1024).
int64_t parse_count(const std::string& text, const std::string& what);

}  // namespace fot::cli
