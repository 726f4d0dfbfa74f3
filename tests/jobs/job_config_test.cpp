// Job YAML: job keys are taken out as plain values; run keys stay, on their own line numbers.
#include "runtime/jobs/job_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
    JobYaml j = split_job_yaml(text, "job.yaml", kKeys);
    EXPECT_EQ(j.values.at("task"), "generate");
    EXPECT_EQ(j.values.at("input"), "my corpus.jsonl");
    EXPECT_EQ(j.values.at("output"), "it's.jsonl");
    EXPECT_EQ(j.values.at("max_new_tokens"), "32");
    EXPECT_EQ(j.lines.at("max_new_tokens"), 8);
    EXPECT_EQ(j.values.count("restart"), 0u);
    EXPECT_EQ(j.run_yaml, "# a job\nmodel: models/m\n\nparallel:\n  tp: 2\n\n\n\n");
}

TEST(JobYaml, RejectsNonScalarsAndDuplicates) {
    auto error = [](const std::string& text) {
        try {
            split_job_yaml(text, "job.yaml", kKeys);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_THAT(error("task: score\ninput: [a, b]\n"),
                HasSubstr("job.yaml:2: input must be a plain value"));
    EXPECT_THAT(error("input:\n  - a.jsonl\n"),
                HasSubstr("job.yaml:2: input must be a plain value"));
    EXPECT_THAT(error("task: score\ntask: generate\n"),
                HasSubstr("job.yaml:2: task is given twice (first at line 1)"));
    EXPECT_THAT(error("output:\nmodel: m\n"), HasSubstr("job.yaml:1: output has no value"));
    EXPECT_THAT(error("input: \"unterminated\n"), HasSubstr("input must be a plain value"));
}

}  // namespace
}  // namespace fot
