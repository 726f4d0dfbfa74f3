// The shared run options: defaults < --config YAML < flags, and the model directory checks.
#include "launch/run_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/status.h"

namespace fot::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kModel = std::string(FOT_TEST_DATA) + "/golden/case_a";

// `head` then the words of `line`.
std::vector<std::string> split(std::vector<std::string> head, const std::string& line) {
    std::vector<std::string> out = std::move(head);
    std::istringstream is(line);
    for (std::string w; is >> w;) out.push_back(w);
    return out;
}

class RunOptionsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("fot_run_options_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string write(const std::string& name, const std::string& text) {
        fs::path p = dir_ / name;
        std::ofstream(p) << text;
        return p.string();
    }

    static RunConfig resolve(const std::vector<std::string>& argv) {
        Args args("fotrt test", "run options under test");
        add_run_options(args);
        EXPECT_TRUE(args.parse(argv));
        return resolve_run_config(args);
    }

    static std::string error_of(const std::vector<std::string>& argv) {
        try {
            resolve(argv);
        } catch (const Error& e) {
            return e.what();
        }
        ADD_FAILURE() << "no error";
        return "";
    }

    fs::path dir_;
};

TEST_F(RunOptionsTest, FlagsOnly) {
    RunConfig c = resolve(split({"--model", kModel},
                                "--tp 2 --mp=4 --retrieval topk --k 32 --mem-dtype f32"
                                " --mem-capacity 4k --mem-capacity-bytes 1.5GB"
                                " --last-context-length 16 --threads 3 --backend cuda"
                                " --dtype bf16 --log-level warn"));
    EXPECT_EQ(c.model, kModel);
    EXPECT_EQ(c.parallel.tp, 2);
    EXPECT_EQ(c.parallel.mp, 4);
    EXPECT_EQ(c.memory.retrieval, Retrieval::kTopK);
    EXPECT_EQ(c.memory.k, 32);
    EXPECT_EQ(c.memory.mem_dtype, DType::kF32);
    EXPECT_EQ(c.memory.capacity_tokens, 4096);
    EXPECT_EQ(c.memory.capacity_bytes, 1500000000);
    EXPECT_EQ(c.last_context_length, 16);
    EXPECT_EQ(c.threads, 3);
    EXPECT_EQ(c.backend, "cuda");
    EXPECT_EQ(c.dtype, DType::kBF16);
    EXPECT_EQ(c.log_level, "warn");
}

TEST_F(RunOptionsTest, FlagsOverrideYamlWhichOverridesDefaults) {
    std::string yaml = write("run.yaml", "model: " + kModel +
                                             "\n"
                                             "parallel: { tp: 2, mp: 2 }\n"
                                             "memory: { k: 64, retrieval: topk, "
                                             "capacity_tokens: 1000, mem_dtype: f16 }\n"
                                             "threads: 5\n");
    // YAML alone: its values, defaults elsewhere.
    RunConfig y = resolve({"--config", yaml});
    EXPECT_EQ(y.parallel.tp, 2);
    EXPECT_EQ(y.parallel.mp, 2);
    EXPECT_EQ(y.memory.k, 64);
    EXPECT_EQ(y.memory.retrieval, Retrieval::kTopK);
    EXPECT_EQ(y.memory.capacity_tokens, 1000);
    EXPECT_EQ(y.memory.mem_dtype, DType::kF16);
    EXPECT_EQ(y.threads, 5);
    EXPECT_EQ(y.backend, "cpu");

    // Flags win over the YAML, and only for what they name; flag order does not matter.
    RunConfig f = resolve({"--tp", "4", "--config", yaml, "--retrieval", "dense", "--mem-capacity",
                           "0", "--mem-dtype", "bf16"});
    EXPECT_EQ(f.parallel.tp, 4);
    EXPECT_EQ(f.parallel.mp, 2);
    EXPECT_EQ(f.memory.k, 64);
    EXPECT_EQ(f.memory.retrieval, Retrieval::kDense);
    EXPECT_EQ(f.memory.capacity_tokens, 0);
    EXPECT_EQ(f.memory.mem_dtype, DType::kBF16);
    EXPECT_EQ(f.threads, 5);
    EXPECT_EQ(f.model, kModel);

    // --model overrides the YAML's model too.
    fs::create_directories(dir_ / "other");
    write("other/config.json", "{}");
    RunConfig m = resolve({"--config", yaml, "--model", (dir_ / "other").string()});
    EXPECT_EQ(m.model, (dir_ / "other").string());
}

TEST_F(RunOptionsTest, ModelDirectoryChecks) {
    EXPECT_THAT(error_of({"--tp", "2"}), HasSubstr("--model is required"));

    std::string missing = (dir_ / "nope").string();
    std::string msg = error_of({"--model", missing});
    EXPECT_THAT(msg, HasSubstr(missing));
    EXPECT_THAT(msg, HasSubstr("does not exist"));

    fs::create_directories(dir_ / "empty");
    msg = error_of({"--model", (dir_ / "empty").string()});
    EXPECT_THAT(msg, HasSubstr((dir_ / "empty").string()));
    EXPECT_THAT(msg, HasSubstr("config.json"));

    std::string file = write("a_file", "x");
    EXPECT_THAT(error_of({"--model", file}), HasSubstr("not a directory"));
}

TEST_F(RunOptionsTest, BadFlagValuesNameTheFlag) {
    const std::pair<std::vector<std::string>, std::string> cases[] = {
        {{"--tp", "0"}, "--tp"},
        {{"--mp", "x"}, "--mp"},
        {{"--k", "0"}, "--k"},
        {{"--threads", "-2"}, "--threads"},
        {{"--retrieval", "knn"}, "--retrieval"},
        {{"--backend", "tpu"}, "--backend"},
        {{"--dtype", "f16"}, "--dtype"},
        {{"--mem-dtype", "int4"}, "--mem-dtype"},
        {{"--mem-capacity", "lots"}, "--mem-capacity"},
        {{"--mem-capacity-bytes", "8XB"}, "--mem-capacity-bytes"},
        {{"--last-context-length", "0"}, "--last-context-length"},
        {{"--log-level", "loud"}, "--log-level"},
        {{"--precision", "bf16"}, "--precision"},
    };
    for (const auto& [extra, flag] : cases) {
        SCOPED_TRACE(flag);
        std::vector<std::string> argv = {"--model", kModel};
        argv.insert(argv.end(), extra.begin(), extra.end());
        EXPECT_THAT(error_of(argv), HasSubstr(flag));
    }
}

TEST_F(RunOptionsTest, PrecisionFlagOverridesYamlAndDefaultsToUnset) {
    EXPECT_FALSE(resolve({"--model", kModel}).precision.has_value());
    EXPECT_EQ(resolve({"--model", kModel, "--precision", "fast"}).precision, Precision::kFast);
    EXPECT_EQ(resolve({"--model", kModel, "--precision=exact"}).precision, Precision::kExact);
    std::string yaml = write("run.yaml", "model: " + kModel + "\nprecision: fast\n");
    EXPECT_EQ(resolve({"--config", yaml}).precision, Precision::kFast);
    EXPECT_EQ(resolve({"--config", yaml, "--precision", "exact"}).precision, Precision::kExact);
    // One line naming the flag and the allowed values.
    EXPECT_EQ(error_of({"--model", kModel, "--precision", "turbo"}),
              "fotrt test: --precision 'turbo' is unknown (expected exact or fast)");
}

TEST_F(RunOptionsTest, BadConfigFileNamesIt) {
    std::string missing = (dir_ / "missing.yaml").string();
    EXPECT_THAT(error_of({"--config", missing, "--model", kModel}), HasSubstr(missing));
    std::string bad = write("bad.yaml", "memory: { kk: 1 }\n");
    std::string msg = error_of({"--config", bad, "--model", kModel});
    EXPECT_THAT(msg, HasSubstr(bad));
    EXPECT_THAT(msg, HasSubstr("memory.kk"));
}

// One row per option: the flag and the YAML key refuse the same values with the same words.
TEST_F(RunOptionsTest, FlagsAndYamlRefuseValuesAlike) {
    int compared = 0;
    for (const Option<RunConfig>& o : run_options().options()) {
        for (const std::string bad : {"x!", "-7", "1.5.5"}) {
            RunConfig scratch;
            const std::string problem = o.set(bad, scratch);
            if (problem.empty()) continue;  // a string option takes anything
            SCOPED_TRACE(o.key + " = " + bad);
            ++compared;
            // A switch (--quiet) takes no value on the command line; its YAML value is checked.
            if (!o.is_switch()) {
                EXPECT_EQ(error_of({"--model", kModel, "--" + o.flag, bad}),
                          "fotrt test: --" + o.flag + " " + problem);
            }
            // "memory.k" -> "memory: {k: x!}"
            std::string yaml = bad;
            std::string key = o.key;
            for (size_t dot; (dot = key.rfind('.')) != std::string::npos;
                 key = key.substr(0, dot)) {
                yaml = str("{", key.substr(dot + 1), ": ", yaml, "}");
            }
            Result<RunConfig> r = parse_run_config(key + ": " + yaml + "\n", "run.yaml");
            ASSERT_FALSE(r.ok());
            EXPECT_EQ(r.status().message(), "run.yaml:1: " + o.key + " " + problem);
        }
    }
    EXPECT_GE(compared, 20);
}

TEST_F(RunOptionsTest, HelpListsTheSharedOptions) {
    Args args("fotrt test", "run options under test");
    add_run_options(args);
    std::string help = args.help();
    for (const char* flag :
         {"--config", "--model", "--backend", "--precision", "--threads", "--tp", "--mp",
          "--retrieval", "--k", "--mem-dtype", "--mem-capacity", "--mem-capacity-bytes",
          "--last-context-length", "--log-level", "--quiet"}) {
        EXPECT_THAT(help, HasSubstr(flag));
    }
}

}  // namespace
}  // namespace fot::cli
