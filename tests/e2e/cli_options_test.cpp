// Every fotrt command, driven from its declared options (launch/commands.h lists the
// commands, Args::declared() their options, both built from the option tables):
//  - unknown options, stray arguments, missing values, values given to switches and values
//    an option rejects all end with exactly one stderr line and exit code 1, before any file
//    is read (no model is given here, so a later check would say --model is required);
//  - --help lists every option with the default taken from the struct it fills;
//  - the docs list every run-YAML key and job key, with the default the table has.
// The real binary runs (FOTRT_EXE), as a user would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "config/run_config.h"
#include "launch/commands.h"
#include "tests/e2e/run_util.h"

namespace fot {
namespace {

using ::testing::HasSubstr;
using testing::run_fotrt;
using testing::RunResult;
using ::testing::StartsWith;

// Runs `fotrt <command> <args>` and expects the one-line usage error containing `needle`.
void expect_usage_error(const std::string& command, const std::string& args,
                        const std::string& needle) {
    SCOPED_TRACE("fotrt " + command + " " + args);
    RunResult r = run_fotrt(command + " " + args);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(r.err_lines(), 1) << r.err;
    EXPECT_THAT(r.err, StartsWith("fotrt " + command + ": error: "));
    EXPECT_THAT(r.err, HasSubstr(needle));
    EXPECT_EQ(r.out, "");
}

std::vector<cli::Args::Declared> declared(const cli::CommandInfo& c) {
    return c.args().declared();
}

TEST(CliOptions, EveryCommandIsListedAndHasOptions) {
    RunResult top = run_fotrt("--help");
    ASSERT_EQ(top.code, 0);
    ASSERT_GE(cli::commands().size(), 7u);
    for (const cli::CommandInfo& c : cli::commands()) {
        EXPECT_THAT(top.out, HasSubstr(std::string("  ") + c.name + " ")) << c.name;
        // Every command has its own options besides --help.
        EXPECT_GE(declared(c).size(), 3u) << c.name;
    }
}

TEST(CliOptions, UnknownOptionsAndStrayArgumentsFail) {
    for (const cli::CommandInfo& c : cli::commands()) {
        const std::string help = "(see fotrt " + std::string(c.name) + " --help)";
        expect_usage_error(c.name, "--frobnicate", "unknown option '--frobnicate' " + help);
        expect_usage_error(c.name, "--frobnicate=3", "unknown option '--frobnicate' " + help);
        // The reported bug: `fotrt generate -n 8` ran 16 tokens and exited 0.
        expect_usage_error(c.name, "-n 8", "unknown option '-n' " + help);
        expect_usage_error(c.name, "stray", "unexpected argument 'stray'");
        expect_usage_error(c.name, "-- --help", "unexpected argument '--'");
        // After a valid switch too: nothing is ignored.
        for (const cli::Args::Declared& d : declared(c)) {
            if (d.value_name.empty() && d.name != "help") {
                expect_usage_error(c.name, "--" + d.name + " 8", "unexpected argument '8'");
                break;
            }
        }
        expect_usage_error(c.name, "--help extra", "unexpected argument 'extra'");
    }
}

TEST(CliOptions, MissingValuesAndValuedSwitchesFail) {
    for (const cli::CommandInfo& c : cli::commands()) {
        int valued = 0;
        for (const cli::Args::Declared& d : declared(c)) {
            const std::string opt = "--" + d.name;
            if (d.value_name.empty()) {
                expect_usage_error(c.name, opt + "=yes", "option " + opt + " takes no value");
                continue;
            }
            ++valued;
            const std::string needs = "option " + opt + " needs a value <" + d.value_name + ">";
            expect_usage_error(c.name, opt, needs);
            // The next option is not taken as the value.
            expect_usage_error(c.name, opt + " --help", needs);
        }
        EXPECT_GE(valued, 2) << c.name;
    }
}

TEST(CliOptions, RejectedValuesFailNamingTheOption) {
    // Values no typed option takes; each option's own row decides (checked in-process), and
    // the binary must then refuse it in one line that names the option.
    const std::string bad[] = {"x!", "-7", "1.5.5"};
    for (const cli::CommandInfo& c : cli::commands()) {
        int typed = 0;
        for (const cli::Args::Declared& d : declared(c)) {
            if (d.value_name.empty()) continue;
            for (const std::string& value : bad) {
                const std::string problem = d.check(value);
                if (problem.empty()) continue;
                ++typed;
                expect_usage_error(c.name, "--" + d.name + " " + value,
                                   "--" + d.name + " " + problem);
                break;
            }
        }
        EXPECT_GE(typed, 1) << c.name << " checks none of its values";
    }
}

TEST(CliOptions, ValuesAreCheckedBeforeAnythingElse) {
    // Each would fail later for another reason (no --model, no input); the value comes first.
    expect_usage_error("generate", "--max-new-tokens eight",
                       "--max-new-tokens expects an integer, got 'eight'");
    expect_usage_error("generate", "--top-p 0", "--top-p must be in (0, 1], got 0");
    expect_usage_error("generate", "--seed -1", "--seed must be >= 0, got -1");
    expect_usage_error("logits", "--tp 0", "--tp must be >= 1, got 0");
    expect_usage_error("logits", "--k abc", "--k expects a positive integer, got 'abc'");
    expect_usage_error("score", "--token-dtype u8",
                       "--token-dtype 'u8' is unknown (expected u16 or u32)");
    expect_usage_error("passkey", "--lengths 2k,,8k", "--lengths expects a count like");
    expect_usage_error("passkey", "--depths 0,1.5", "--depths must be in [0, 1], got 1.5");
    expect_usage_error("passkey", "--depth-bins 101", "--depth-bins must be in [1, 100], got 101");
    expect_usage_error("batch", "--task rank",
                       "--task 'rank' is unknown (expected score or generate)");
    expect_usage_error("batch", "--max-new-tokens 0", "--max-new-tokens must be >= 1, got 0");
    expect_usage_error("convert", "--max-shard-size 0", "--max-shard-size must be >= 1");
    expect_usage_error("inspect", "--mem-dtype i8", "--mem-dtype 'i8' is unknown");
}

// The help block of `--name`: from its line to the next option's.
std::string help_block(const std::string& help, const std::string& name) {
    const size_t at = help.find("\n  --" + name + " ") != std::string::npos
                          ? help.find("\n  --" + name + " ")
                          : help.find("\n  --" + name + "\n");
    if (at == std::string::npos) return "";
    const size_t end = help.find("\n  --", at + 1);
    return help.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

TEST(CliOptions, HelpShowsEveryOptionWithItsDefault) {
    for (const cli::CommandInfo& c : cli::commands()) {
        SCOPED_TRACE(c.name);
        RunResult r = run_fotrt(std::string(c.name) + " --help");
        ASSERT_EQ(r.code, 0) << r.err;
        EXPECT_EQ(r.err, "");
        for (const cli::Args::Declared& d : declared(c)) {
            const std::string block = help_block(r.out, d.name);
            ASSERT_NE(block, "") << "--" << d.name << " missing from\n" << r.out;
            EXPECT_THAT(block, HasSubstr(d.help));
            if (d.required) {
                EXPECT_THAT(block, HasSubstr("(required)"));
            } else if (!d.default_text.empty()) {
                EXPECT_THAT(block, HasSubstr("(default: " + d.default_text + ")"));
            }
        }
    }
    // The defaults come from the structs the options fill (pinned here by value, so a change
    // of a struct default shows up as a deliberate test change).
    auto help_of = [](const std::string& cmd) { return run_fotrt(cmd + " --help").out; };
    const std::string gen = help_of("generate");
    EXPECT_THAT(help_block(gen, "max-new-tokens"), HasSubstr("(default: 16)"));  // GenerateOptions
    EXPECT_THAT(help_block(gen, "top-p"), HasSubstr("(default: 1)"));
    EXPECT_THAT(help_block(gen, "k"), HasSubstr("(default: 128)"));  // MemoryConfig
    EXPECT_THAT(help_block(gen, "tp"), HasSubstr("(default: 1)"));
    EXPECT_THAT(help_block(gen, "backend"), HasSubstr("(default: cpu)"));
    EXPECT_THAT(help_block(gen, "retrieval"), HasSubstr("(default: dense)"));
    EXPECT_THAT(help_block(help_of("batch"), "max-new-tokens"), HasSubstr("(default: 64)"));
    EXPECT_THAT(help_block(help_of("batch"), "config"), HasSubstr("JOB.yaml"));
    EXPECT_THAT(help_block(help_of("passkey"), "depth-bins"), HasSubstr("(default: 5)"));
    EXPECT_THAT(help_block(help_of("convert"), "max-shard-size"), HasSubstr("(default: 5GB)"));
    EXPECT_THAT(help_block(help_of("convert"), "dtype"), HasSubstr("(default: keep)"));
    EXPECT_THAT(help_block(help_of("logits"), "ids"), HasSubstr("(required)"));
}

std::string read_doc(const std::string& name) {
    std::ifstream in(std::string(FOT_SOURCE_DIR) + "/docs/" + name);
    EXPECT_TRUE(in) << name;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string without_backticks(std::string s) {
    std::erase(s, '`');
    return s;
}

// docs/configuration.md §3.2 has one table row per run option: | `key` | `--flag ...` |
// default | meaning |, and the default agrees with the table's.
TEST(CliOptions, ConfigurationDocListsEveryRunOption) {
    const std::string doc = read_doc("configuration.md");
    for (const Option<RunConfig>& o : run_options().options()) {
        SCOPED_TRACE(o.key);
        const std::string head = "\n| `" + o.key + "` | `--" + o.flag;
        const size_t at = doc.find(head);
        ASSERT_NE(at, std::string::npos) << "no row starting with" << head;
        const std::string row = doc.substr(at + 1, doc.find('\n', at + 1) - at - 1);
        // The third cell (after the key and the flag; the flag cell may hold "\|").
        std::vector<std::string> cells;
        std::string cell;
        for (size_t i = 1; i < row.size(); ++i) {
            if (row[i] == '|' && row[i - 1] != '\\') {
                cells.push_back(cell);
                cell.clear();
            } else {
                cell += row[i];
            }
        }
        ASSERT_GE(cells.size(), 3u) << row;
        const std::string want = o.default_text.empty() ? "(required)" : o.default_text;
        EXPECT_EQ(without_backticks(cells[2]), " " + want + " ") << row;
    }
}

// docs/jobs.md lists every job key of fotrt batch (the batch rows that are not run options).
TEST(CliOptions, JobsDocListsEveryJobKey) {
    const std::string doc = read_doc("jobs.md");
    const size_t at = doc.find("Job keys:");
    ASSERT_NE(at, std::string::npos);
    const std::string list = doc.substr(at, doc.find("\n\n", at) - at);
    int keys = 0;
    for (const cli::CommandInfo& c : cli::commands()) {
        if (std::string(c.name) != "batch") continue;
        for (const cli::Args::Declared& d : declared(c)) {
            if (d.key.empty() || run_options().find_key(d.key) != nullptr) continue;
            ++keys;
            EXPECT_THAT(list, HasSubstr("`" + d.key + "`"));
        }
    }
    EXPECT_GE(keys, 13);
}

}  // namespace
}  // namespace fot
