// RunConfig YAML: every field, defaults, strictness (unknown keys, wrong types, bad values,
// all named by key path), byte sizes, and the shipped examples.
#include "config/run_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace fot {
namespace {

using ::testing::HasSubstr;

TEST(RunConfigTest, EveryField) {
    const char* yaml = R"(
model: /models/long_llama_3b
backend: cuda
dtype: bf16
threads: 6
parallel: { tp: 2, mp: 4 }
memory:
  retrieval: topk
  k: 64
  mem_dtype: f32
  capacity_tokens: 100000
  capacity_bytes: 8GiB
last_context_length: 512
log_level: debug
)";
    Result<RunConfig> r = parse_run_config(yaml, "run.yaml");
    ASSERT_TRUE(r.ok()) << r.status().message();
    const RunConfig& c = r.value();
    EXPECT_EQ(c.model, "/models/long_llama_3b");
    EXPECT_EQ(c.backend, "cuda");
    EXPECT_EQ(c.dtype, DType::kBF16);
    EXPECT_EQ(c.threads, 6);
    EXPECT_EQ(c.parallel.tp, 2);
    EXPECT_EQ(c.parallel.mp, 4);
    EXPECT_EQ(c.memory.retrieval, Retrieval::kTopK);
    EXPECT_EQ(c.memory.k, 64);
    ASSERT_TRUE(c.memory.mem_dtype.has_value());
    EXPECT_EQ(*c.memory.mem_dtype, DType::kF32);
    EXPECT_EQ(c.memory.capacity_tokens, 100000);
    EXPECT_EQ(c.memory.capacity_bytes, int64_t{8} << 30);
    ASSERT_TRUE(c.last_context_length.has_value());
    EXPECT_EQ(*c.last_context_length, 512);
    EXPECT_EQ(c.log_level, "debug");
}

TEST(RunConfigTest, EmptyAndPartialDocumentsKeepDefaults) {
    for (const char* yaml : {"", "# only a comment\n", "model: m\n"}) {
        SCOPED_TRACE(yaml);
        Result<RunConfig> r = parse_run_config(yaml, "run.yaml");
        ASSERT_TRUE(r.ok()) << r.status().message();
        const RunConfig& c = r.value();
        EXPECT_EQ(c.backend, "cpu");
        EXPECT_EQ(c.dtype, DType::kF32);
        EXPECT_EQ(c.threads, 0);
        EXPECT_EQ(c.parallel.tp, 1);
        EXPECT_EQ(c.parallel.mp, 1);
        EXPECT_EQ(c.memory.retrieval, Retrieval::kDense);
        EXPECT_EQ(c.memory.k, 128);
        EXPECT_FALSE(c.memory.mem_dtype.has_value());
        EXPECT_EQ(c.memory.capacity_tokens, 0);
        EXPECT_EQ(c.memory.capacity_bytes, 0);
        EXPECT_FALSE(c.last_context_length.has_value());
        EXPECT_EQ(c.log_level, "");
        EXPECT_FALSE(c.precision.has_value());  // decided by the checkpoint's dtype
    }
}

TEST(RunConfigTest, PrecisionKey) {
    for (const auto& [text, want] :
         {std::pair{"exact", Precision::kExact}, std::pair{"fast", Precision::kFast}}) {
        Result<RunConfig> r =
            parse_run_config(std::string("precision: ") + text + "\n", "run.yaml");
        ASSERT_TRUE(r.ok()) << r.status().message();
        ASSERT_TRUE(r.value().precision.has_value());
        EXPECT_EQ(*r.value().precision, want);
    }
    Result<RunConfig> n = parse_run_config("precision: ~\n", "run.yaml");
    ASSERT_TRUE(n.ok()) << n.status().message();
    EXPECT_FALSE(n.value().precision.has_value());
    // A bad value: one line naming the file, line, key and the allowed values.
    Result<RunConfig> bad = parse_run_config("model: m\nprecision: turbo\n", "run.yaml");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().message(),
              "run.yaml:2: precision 'turbo' is unknown (expected exact or fast)");
}

TEST(RunConfigTest, NullClearsOptionalFields) {
    Result<RunConfig> r =
        parse_run_config("memory: { mem_dtype: ~ }\nlast_context_length:\n", "run.yaml");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_FALSE(r.value().memory.mem_dtype.has_value());
    EXPECT_FALSE(r.value().last_context_length.has_value());
}

TEST(RunConfigTest, SpellingsOfDtypes) {
    Result<RunConfig> r =
        parse_run_config("dtype: float32\nmemory: { mem_dtype: bfloat16 }\n", "run.yaml");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r.value().dtype, DType::kF32);
    EXPECT_EQ(*r.value().memory.mem_dtype, DType::kBF16);
}

TEST(RunConfigTest, InvalidDocumentsNameTheKey) {
    struct Bad {
        const char* yaml;
        std::vector<const char*> parts;
    };
    const Bad cases[] = {
        {"modle: x\n", {"unknown key 'modle'", "model"}},
        {"memory:\n  kk: 3\n", {"unknown key 'memory.kk'", "retrieval"}},
        {"parallel: { tp: 2, dp: 2 }\n", {"unknown key 'parallel.dp'"}},
        {"memory: { k: abc }\n", {"memory.k", "positive integer", "abc"}},
        {"memory: { k: 0 }\n", {"memory.k", "positive integer"}},
        {"memory: { k: 1.5 }\n", {"memory.k"}},
        {"memory: { k: [1] }\n", {"memory.k", "a list"}},
        {"parallel: { tp: 0 }\n", {"parallel.tp", ">= 1"}},
        {"parallel: { mp: -2 }\n", {"parallel.mp", ">= 1"}},
        {"parallel: 3\n", {"parallel", "mapping"}},
        {"memory: dense\n", {"memory", "mapping"}},
        {"threads: -1\n", {"threads", "in [0, 1024]", "-1"}},
        {"threads: 100000\n", {"threads", "in [0, 1024]", "100000"}},
        {"threads: many\n", {"threads"}},
        {"backend: gpu\n", {"backend", "'gpu'", "cpu or cuda"}},
        {"dtype: f16\n", {"dtype", "f32 or bf16"}},
        {"memory: { retrieval: knn }\n", {"memory.retrieval", "knn", "dense or topk"}},
        {"memory: { mem_dtype: int8 }\n", {"memory.mem_dtype", "int8"}},
        {"memory: { capacity_tokens: -5 }\n", {"memory.capacity_tokens"}},
        {"memory: { capacity_bytes: 8XB }\n", {"memory.capacity_bytes", "8XB", "unit"}},
        {"last_context_length: 0\n", {"last_context_length", "positive"}},
        {"log_level: loud\n", {"log_level", "loud"}},
        {"model: [a, b]\n", {"model", "string", "a list"}},
        {"model: a\nmodel: b\n", {"model", "twice"}},
        {"- just\n- a list\n", {"the document", "mapping"}},
        {"model: [unclosed\n", {"invalid YAML"}},
    };
    for (const auto& bc : cases) {
        SCOPED_TRACE(bc.yaml);
        Result<RunConfig> r = parse_run_config(bc.yaml, "conf/run.yaml");
        ASSERT_FALSE(r.ok());
        const std::string& msg = r.status().message();
        EXPECT_EQ(msg.rfind("conf/run.yaml", 0), 0u) << msg;
        for (const char* part : bc.parts) EXPECT_THAT(msg, HasSubstr(part));
        EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
}

TEST(RunConfigTest, ErrorsCarryTheLine) {
    Result<RunConfig> r = parse_run_config("model: m\nmemory:\n  k: -3\n", "run.yaml");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("run.yaml:3:"));
}

TEST(RunConfigTest, ByteSizes) {
    const std::pair<const char*, int64_t> good[] = {
        {"0", 0},
        {"1000000", 1000000},
        {"512MB", 512000000},
        {"1.5GB", 1500000000},
        {"8GiB", int64_t{8} << 30},
        {"8 GiB", int64_t{8} << 30},
        {"1KiB", 1024},
        {"2kb", 2000},
        {"3B", 3},
        {"0.5MiB", 524288},
        {"2TiB", int64_t{2} << 40},
    };
    for (const auto& [text, bytes] : good) {
        SCOPED_TRACE(text);
        Result<int64_t> r = parse_byte_size(text);
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_EQ(r.value(), bytes);
    }
    for (const char* text :
         {"", "abc", "-1", "1.2.3", "8XB", "GiB", "8 GiB extra", "100000000000TB"}) {
        SCOPED_TRACE(text);
        Result<int64_t> r = parse_byte_size(text);
        ASSERT_FALSE(r.ok());
        EXPECT_THAT(r.status().message(), HasSubstr(std::string("'") + text + "'"));
    }
}

TEST(RunConfigTest, CapacityTokensTakeCountsLikeTheFlag) {
    Result<RunConfig> r = parse_run_config("memory: { capacity_tokens: 64k }\n", "run.yaml");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r.value().memory.capacity_tokens, 65536);
}

TEST(RunConfigTest, ByteSizeAsYamlInteger) {
    Result<RunConfig> r = parse_run_config("memory: { capacity_bytes: 123456 }\n", "run.yaml");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r.value().memory.capacity_bytes, 123456);
}

TEST(RunConfigTest, ShippedExamplesParse) {
    namespace fs = std::filesystem;
    fs::path dir = fs::path(FOT_SOURCE_DIR) / "config" / "examples";
    int seen = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".yaml") continue;
        // Bench sweeps are another format (config/sweep_config.h; tests/jobs/perf_model_test).
        if (entry.path().filename().string().rfind("sweep-", 0) == 0) continue;
        SCOPED_TRACE(entry.path().string());
        Result<RunConfig> r = load_run_config(entry.path().string());
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_FALSE(r.value().model.empty());
        ++seen;
    }
    EXPECT_GE(seen, 3);

    RunConfig cluster = load_run_config((dir / "cluster-tp2-mp4.yaml").string()).value();
    EXPECT_EQ(cluster.parallel.tp, 2);
    EXPECT_EQ(cluster.parallel.mp, 4);
    EXPECT_EQ(cluster.backend, "cuda");
    RunConfig topk = load_run_config((dir / "topk.yaml").string()).value();
    EXPECT_EQ(topk.memory.retrieval, Retrieval::kTopK);
}

TEST(RunConfigTest, MissingFileNamesThePath) {
    Result<RunConfig> r = load_run_config("/nonexistent/run.yaml");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/run.yaml"));
}

TEST(RunConfigTest, ValidateHandBuilt) {
    RunConfig c;
    EXPECT_TRUE(validate_run_config(c, "x").ok());
    c.parallel.tp = 0;
    Status s = validate_run_config(c, "x");
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr("parallel.tp"));
    c.parallel.tp = 1;
    c.backend = "tpu";
    EXPECT_FALSE(validate_run_config(c, "x").ok());
    EXPECT_STREQ(retrieval_name(Retrieval::kTopK), "topk");
    EXPECT_STREQ(retrieval_name(Retrieval::kDense), "dense");
}

}  // namespace
}  // namespace fot
