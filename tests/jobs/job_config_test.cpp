// Job YAML (config/run_config.h parse_job_yaml): the whole file goes through yaml-cpp; job
// keys come out as plain values with their lines, run keys become the RunConfig.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/run_config.h"
#include "runtime/core/status.h"

namespace fot {
namespace {

using ::testing::HasSubstr;

const std::set<std::string> kKeys = {"task", "input", "output", "max_new_tokens", "restart"};

TEST(JobYaml, SplitsJobKeysFromRunKeys) {
    const std::string text =
        "# a job\n"
        "model: models/m\n"
        "task: generate   # comment\n"
        "parallel:\n"
        "  tp: 2\n"
        "input: \"my corpus.jsonl\"\n"
        "output: 'it''s.jsonl'\n"
        "max_new_tokens: 32\n";
    JobYaml j = parse_job_yaml(text, "job.yaml", kKeys).value();
    EXPECT_EQ(j.values.at("task"), "generate");
    EXPECT_EQ(j.values.at("input"), "my corpus.jsonl");
    EXPECT_EQ(j.values.at("output"), "it's.jsonl");
    EXPECT_EQ(j.values.at("max_new_tokens"), "32");
    EXPECT_EQ(j.lines.at("max_new_tokens"), 8);
    EXPECT_EQ(j.values.count("restart"), 0u);
    EXPECT_EQ(j.run.model, "models/m");
    EXPECT_EQ(j.run.parallel.tp, 2);
}

// The line splitter this replaced read "{task: score, input: x}" as nothing at all.
TEST(JobYaml, ReadsFlowMappings) {
    JobYaml j = parse_job_yaml("{model: m, task: score, input: c.jsonl, parallel: {mp: 2}}\n",
                               "job.yaml", kKeys)
                    .value();
    EXPECT_EQ(j.values.at("task"), "score");
    EXPECT_EQ(j.values.at("input"), "c.jsonl");
    EXPECT_EQ(j.run.model, "m");
    EXPECT_EQ(j.run.parallel.mp, 2);
    EXPECT_EQ(j.lines.at("input"), 1);
}

TEST(JobYaml, RejectsNonScalarsDuplicatesAndSecondDocuments) {
    auto error = [](const std::string& text) {
        Result<JobYaml> r = parse_job_yaml(text, "job.yaml", kKeys);
        return r.ok() ? std::string("no error") : r.status().message();
    };
    EXPECT_THAT(error("task: score\ninput: [a, b]\n"),
                HasSubstr("job.yaml:2: input must be a plain value"));
    EXPECT_THAT(error("input:\n  - a.jsonl\n"),
                HasSubstr("job.yaml:2: input must be a plain value"));
    EXPECT_THAT(error("task: score\ntask: generate\n"),
                HasSubstr("job.yaml:2: task is given twice (first at line 1)"));
    EXPECT_THAT(error("output:\nmodel: m\n"), HasSubstr("job.yaml:1: output has no value"));
    EXPECT_THAT(error("task: [score\n"), HasSubstr("job.yaml:2: invalid YAML"));
    EXPECT_THAT(error("task: score\n---\ntask: generate\n"),
                HasSubstr("job.yaml:3: a second YAML document (after '---') is not allowed"));
    EXPECT_THAT(error("task: score\nmodle: m\n"), HasSubstr("job.yaml:2: unknown key 'modle'"));
}

TEST(RunYaml, RejectsASecondDocument) {
    Result<RunConfig> r = parse_run_config("model: a\n---\nmodel: b\n", "run.yaml");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(),
                HasSubstr("run.yaml:3: a second YAML document (after '---') is not allowed"));
}

}  // namespace
}  // namespace fot
