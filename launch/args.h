// The command-line parser of the fotrt subcommands (and the benchmarks).
//
// A command declares its options by adding option tables (config/options.h): each row gives
// the flag, its value placeholder, its help, its default (printed from the struct the row
// fills) and its value type. So --help, the "unknown option" check and the value checks come
// from the same rows that fill the command's structs, and no option exists twice.
//
// Accepted: "--name value", "--name=value", a switch "--name", and "--help" / "-h". Rejected
// by parse(), with one line that names the command, the argument and what to do:
//   fotrt generate: unknown option '-n' (see fotrt generate --help)
//   fotrt generate: unexpected argument '8' (the options all start with --; see ...)
//   fotrt generate: option --ids needs a value <IDS.json>
//   fotrt generate: --max-new-tokens expects an integer, got 'x'
// No fotrt command takes positional arguments, so every stray word is an error rather than
// something silently ignored.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "config/options.h"
#include "runtime/core/status.h"

namespace fot::cli {

class Args {
  public:
    // `command` is e.g. "fotrt logits"; `summary` a paragraph; `examples` printed by --help.
    Args(std::string command, std::string summary, std::vector<std::string> examples = {});

    // Declares the rows of `table` that have a flag, in table order (--help lists them so).
    // A flag declared twice is a bug (FOT_ASSERT).
    template <typename T>
    void add(const OptionTable<T>& table);

    // Parses the arguments after the subcommand name and checks every value with its row.
    // Returns false when --help was given (the help is printed to stdout); throws fot::Error
    // for bad usage (see the top of this file). A flag given twice keeps the last value.
    bool parse(const std::vector<std::string>& args);

    // Writes every flag of `table` given on the command line into `target` (call it after
    // reading a YAML so that flags win), then checks the table's required rows: throws
    // "fotrt logits: --ids is required (see fotrt logits --help)", or for a row with a YAML
    // key "... (or 'input:' in the --config YAML; see ...)".
    template <typename T>
    void apply(const OptionTable<T>& table, T& target) const;

    // The text of a flag given on the command line, for what is read before any struct
    // exists (the --config path).
    bool has(const std::string& name) const;
    std::string get(const std::string& name) const;

    std::string help() const;
    const std::string& command() const { return command_; }

    // What --help shows for one option; tests compare the help with the tables through it.
    struct Declared {
        std::string name, value_name, help, default_text, key;
        bool required = false;
        // "" when `text` is a valid value, else the problem.
        std::function<std::string(const std::string& text)> check;
    };
    const std::vector<Declared>& declared() const { return declared_; }

  private:
    void declare(Declared d);
    const Declared* find(const std::string& name) const;
    [[noreturn]] void usage_error(const std::string& what) const;

    std::string command_, summary_;
    std::vector<std::string> examples_;
    std::vector<Declared> declared_;
    std::map<std::string, std::string> values_;
};

template <typename T>
void Args::add(const OptionTable<T>& table) {
    for (const Option<T>& o : table.options()) {
        if (o.flag.empty()) continue;
        // Checked on a scratch struct at parse time, so that a bad value fails before any
        // file is read or any model is loaded, whatever the order the command applies in.
        declare({o.flag, o.value_name, o.help, o.default_text, o.key, o.required,
                 [o](const std::string& text) {
                     T scratch{};
                     return o.set(text, scratch);
                 }});
    }
}

template <typename T>
void Args::apply(const OptionTable<T>& table, T& target) const {
    for (const Option<T>& o : table.options()) {
        if (o.flag.empty() || !has(o.flag)) continue;
        const std::string problem = o.set(get(o.flag), target);
        FOT_CHECK(problem.empty(), command_, ": --", o.flag, " ", problem);
    }
    for (const Option<T>& o : table.options()) {
        if (!o.required || o.given(target)) continue;
        const std::string yaml =
            o.key.empty() ? "" : " (or '" + o.key + ":' in the --config YAML; see ";
        FOT_THROW(command_, ": --", o.flag, " is required", yaml.empty() ? " (see " : yaml,
                  command_, " --help)");
    }
}

}  // namespace fot::cli
