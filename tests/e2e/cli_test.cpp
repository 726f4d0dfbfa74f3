// End-to-end tests of the fotrt CLI: the golden contracts (logits file, generate JSON) and
// bad inputs (one-line error, non-zero exit, never a crash).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/e2e/run_util.h"
#include "tests/model/golden_util.h"

namespace fot {
namespace {

using testing::golden_dir;
using testing::run_fotrt;
using testing::RunResult;
using testing::TempDir;

void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
}

TEST(Cli, HelpAndUsage) {
    RunResult r = run_fotrt("--help");
    EXPECT_EQ(r.code, 0);
    for (const char* cmd : {"logits", "generate", "inspect", "convert"}) {
        EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
        RunResult h = run_fotrt(std::string(cmd) + " --help");
        EXPECT_EQ(h.code, 0) << cmd;
        EXPECT_NE(h.out.find("examples:"), std::string::npos) << cmd;
    }
    RunResult bad = run_fotrt("frobnicate");
    EXPECT_NE(bad.code, 0);
    EXPECT_EQ(bad.err_lines(), 1) << bad.err;
}

class CliGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CliGolden, LogitsFileMatchesReference) {
    const std::string dir = golden_dir(GetParam());
    TempDir tmp;
    RunResult r = run_fotrt("logits --model " + dir + " --ids " + dir + "/input_ids.json --out " +
                            (tmp / "l.f32") + " --threads 2");
    ASSERT_EQ(r.code, 0) << r.err;
    const auto ours = testing::read_f32(tmp / "l.f32");
    const auto ref = testing::read_f32(dir + "/logits.f32");
    ASSERT_EQ(ours.size(), ref.size());
    EXPECT_LT(testing::max_abs_diff(ours, ref), 1e-4);
    EXPECT_FALSE(std::filesystem::exists(tmp / "l.f32.partial"));
}

TEST_P(CliGolden, GenerateJsonMatchesGreedyReference) {
    const std::string dir = golden_dir(GetParam());
    RunResult r = run_fotrt("generate --model " + dir + " --ids " + dir +
                            "/input_ids.json --max-new-tokens 16 --ignore-eos --json");
    ASSERT_EQ(r.code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    auto ref = testing::read_json(dir + "/greedy.json");
    EXPECT_EQ(j["new_tokens"], ref["new_tokens"]);
    EXPECT_EQ(j["memory_tokens"], ref["steps"].back()["mem_len_after"].begin().value());
}

INSTANTIATE_TEST_SUITE_P(Golden, CliGolden, ::testing::Values("case_a", "case_e", "case_f"));

// --precision on the command line and in the run YAML reach the model: on case_h's f32
// checkpoint the default (exact) matches the reference's fp32 logits; fast (bf16 operands)
// does not, but stays within the reference's own bf16 run (0.140).
TEST(CliPrecision, FlagAndYamlSelectTheArithmetic) {
    const std::string dir = golden_dir("case_h");
    const auto ref = testing::read_f32(dir + "/logits_f32.f32");
    TempDir tmp;
    auto logits = [&](const std::string& extra) {
        RunResult r = run_fotrt("logits --model " + dir + " --ids " + dir +
                                "/input_ids.json --out " + (tmp / "l.f32") + " " + extra);
        EXPECT_EQ(r.code, 0) << r.err;
        return testing::read_f32(tmp / "l.f32");
    };
    EXPECT_LT(testing::max_abs_diff(logits(""), ref), 1e-4);  // f32 checkpoint: exact
    EXPECT_LT(testing::max_abs_diff(logits("--precision exact"), ref), 1e-4);
    const auto fast = logits("--precision fast");
    EXPECT_GT(testing::max_abs_diff(fast, ref), 1e-3);
    EXPECT_LE(testing::max_abs_diff(fast, ref), 0.140);
    write_file(tmp / "run.yaml", "precision: fast\n");
    EXPECT_EQ(logits("--config " + (tmp / "run.yaml")), fast);
    EXPECT_LT(
        testing::max_abs_diff(logits("--config " + (tmp / "run.yaml") + " --precision exact"), ref),
        1e-4);
    RunResult h = run_fotrt("logits --help");
    EXPECT_NE(h.out.find("--precision exact|fast"), std::string::npos) << h.out;
    EXPECT_NE(h.out.find("--precision exact "), std::string::npos) << h.out;  // an example
}

// Every bad input: non-zero exit, exactly one line on stderr that contains `needle`.
void expect_one_line_error(const std::string& args, const std::string& needle) {
    RunResult r = run_fotrt(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_LT(r.code, 128) << "crashed: " << args << "\n" << r.err;
    EXPECT_EQ(r.err_lines(), 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
}

TEST(CliBadInput, OneLineErrors) {
    const std::string a = golden_dir("case_a");
    TempDir tmp;
    const std::string out = " --out " + (tmp / "x.f32");
    write_file(tmp / "oov.json", "[1, 5, 256]");
    expect_one_line_error("logits --model " + a + " --ids " + (tmp / "oov.json") + out,
                          "out of the vocabulary");
    write_file(tmp / "empty.json", "[]");
    expect_one_line_error("logits --model " + a + " --ids " + (tmp / "empty.json") + out,
                          "empty input");
    write_file(tmp / "bad.json", "[1, 2,");
    expect_one_line_error("logits --model " + a + " --ids " + (tmp / "bad.json") + out, "bad.json");
    write_file(tmp / "obj.json", "{\"ids\": [1]}");
    expect_one_line_error("logits --model " + a + " --ids " + (tmp / "obj.json") + out,
                          "flat JSON list");
    expect_one_line_error("logits --model " + a + " --ids " + (tmp / "missing.json") + out,
                          "missing.json");
    // A model directory without weights.
    std::filesystem::create_directories(tmp / "noweights");
    std::filesystem::copy_file(a + "/config.json", tmp / "noweights/config.json");
    expect_one_line_error(
        "logits --model " + (tmp / "noweights") + " --ids " + a + "/input_ids.json" + out,
        "noweights");
    expect_one_line_error(
        "logits --model " + (tmp / "nothere") + " --ids " + a + "/input_ids.json" + out, "nothere");
    // An input longer than the memory capacity.
    expect_one_line_error(
        "logits --model " + a + " --ids " + a + "/input_ids.json" + out + " --mem-capacity 100",
        "capacity");
    // Usage errors.
    expect_one_line_error("logits --model " + a + out, "--ids");
    expect_one_line_error(
        "logits --model " + a + " --ids " + a + "/input_ids.json" + out + " --frobnicate",
        "--frobnicate");
    expect_one_line_error(
        "logits --model " + a + " --ids " + a + "/input_ids.json" + out + " --tp 3", "3");
    expect_one_line_error(
        "logits --model " + a + " --ids " + a + "/input_ids.json" + out + " --precision turbo",
        "--precision 'turbo' is unknown (expected exact or fast)");
    write_file(tmp / "run.yaml", "precision: bf16\n");
    expect_one_line_error("logits --model " + a + " --ids " + a + "/input_ids.json" + out +
                              " --config " + (tmp / "run.yaml"),
                          "precision 'bf16' is unknown (expected exact or fast)");
    expect_one_line_error("generate --model " + a + " --max-new-tokens 2", "--ids");
    expect_one_line_error("generate --model " + a + " --prompt hello", "tokenizer.model");
    expect_one_line_error("logits --model " + a + " --ids " + a + "/input_ids.json --out " +
                              (tmp / "no/such/dir/x.f32"),
                          "x.f32");
    EXPECT_FALSE(std::filesystem::exists(tmp / "x.f32"));
}

}  // namespace
}  // namespace fot
