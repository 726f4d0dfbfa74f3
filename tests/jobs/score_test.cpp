// Scoring and the corpus runner in one process (SelfCommunicator) on the golden models:
// NLL equals a direct log-softmax of the full logits, the capacity pre-check agrees with the
// model, batch records/summary/resume, and batch generation equals the golden greedy tokens.
#include "runtime/jobs/score_job.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include "tests/model/golden_checks.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "parallel/self_communicator.h"
#include "runtime/jobs/batch_job.h"
#include "runtime/jobs/generate_job.h"
#include "runtime/jobs/session.h"

namespace fot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string golden(const std::string& c) {
    return std::string(FOT_TEST_DATA) + "/golden/" + c;
}

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    EXPECT_TRUE(in) << path;
    return nlohmann::json::parse(in);
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
    std::ifstream in(path);
    std::vector<nlohmann::json> out;
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
}

struct Loaded {
    parallel::SelfCommunicator world;
    std::unique_ptr<Session> session;
};

std::unique_ptr<Loaded> open_model(const std::string& dir, int64_t capacity = 0) {
    auto l = std::make_unique<Loaded>();
    RunConfig run;
    run.model = dir;
    run.threads = 1;
    run.memory.capacity_tokens = capacity;
    l->session = open_session(run, l->world);
    return l;
}

TEST(DistanceBuckets, BoundariesAndLabels) {
    EXPECT_EQ(distance_bucket_index(0), 0);
    EXPECT_EQ(distance_bucket_index(2047), 0);
    EXPECT_EQ(distance_bucket_index(2048), 1);
    EXPECT_EQ(distance_bucket_index(8191), 1);
    EXPECT_EQ(distance_bucket_index(8192), 2);
    EXPECT_EQ(distance_bucket_index(32767), 2);
    EXPECT_EQ(distance_bucket_index(32768), 3);
    EXPECT_EQ(distance_bucket_index(131072), 4);
    const char* labels[] = {"0-2k", "2k-8k", "8k-32k", "32k-128k", "128k-512k", "512k-2m", "2m-8m"};
    for (int i = 0; i < 7; ++i) {
        const DistanceBucket b = distance_bucket(i);
        EXPECT_EQ(distance_bucket_label(b), labels[i]);
        EXPECT_EQ(distance_bucket_index(b.begin), i);
        EXPECT_EQ(distance_bucket_index(b.end - 1), i);
        EXPECT_EQ(distance_bucket_index(b.end), i + 1);
    }
}

class ScoreGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ScoreGolden, EqualsDirectLogSoftmaxOfAllLogits) {
    auto m = open_model(golden(GetParam()));
    Session& s = *m->session;
    const auto ids = read_json(golden(GetParam()) + "/input_ids.json").get<std::vector<int32_t>>();
    const int64_t n = static_cast<int64_t>(ids.size()), V = s.model_config.vocab_size;

    const std::vector<float> logits = testing::forward_all(s, ids);
    ASSERT_EQ(static_cast<int64_t>(logits.size()), n * V);

    int windows = 0;
    ScoreOptions so;
    so.keep_token_nll = true;
    so.between_windows = [&] { ++windows; };
    const ScoreResult r = score_document(s, ids, so);
    EXPECT_GT(windows, 1);  // called window by window
    ASSERT_EQ(r.tokens, n - 1);
    ASSERT_EQ(static_cast<int64_t>(r.token_nll.size()), n - 1);
    double sum = 0;
    for (int64_t t = 0; t + 1 < n; ++t) {
        const float* row = logits.data() + t * V;
        double mx = row[0];
        for (int64_t i = 1; i < V; ++i) mx = std::max(mx, static_cast<double>(row[i]));
        double se = 0;
        for (int64_t i = 0; i < V; ++i) se += std::exp(static_cast<double>(row[i]) - mx);
        const double nll = std::log(se) + mx - row[ids[t + 1]];
        EXPECT_NEAR(r.token_nll[t], nll, 1e-5) << "position " << t + 1;
        sum += nll;
    }
    EXPECT_NEAR(r.nll_sum, sum, 1e-4);
    EXPECT_NEAR(r.ppl, std::exp(sum / (n - 1)), 1e-4 * r.ppl);
    ASSERT_EQ(r.buckets.size(), 1u);
    EXPECT_EQ(r.buckets[0].tokens, n - 1);
    EXPECT_DOUBLE_EQ(r.buckets[0].nll_sum, r.nll_sum);

    const auto j = nlohmann::json::parse(score_record_json("\"x\"", 4, r));
    EXPECT_EQ(j["id"], "x");
    EXPECT_EQ(j["index"], 4);
    EXPECT_EQ(j["tokens"], n - 1);
    EXPECT_DOUBLE_EQ(j["nll_sum"].get<double>(), r.nll_sum);
    EXPECT_EQ(j["nll_by_distance"]["0-2k"]["tokens"], n - 1);
}

INSTANTIATE_TEST_SUITE_P(Golden, ScoreGolden, ::testing::Values("case_a", "case_f"));

TEST(Capacity, PreCheckAgreesWithTheModel) {
    // case_a: W = 36, lcl = 32; 50 memory tokens per rank.
    auto m = open_model(golden("case_a"), 50);
    Session& s = *m->session;
    EXPECT_EQ(capacity_problem(s, 82, 0), "");  // 50 tokens to memory
    EXPECT_THAT(capacity_problem(s, 83, 0), HasSubstr("needs 51 memory tokens"));
    const std::vector<int32_t> prompt(60, 5);
    for (int64_t new_tokens : {4, 5, 6, 12}) {
        SCOPED_TRACE(new_tokens);
        const bool precheck_fits = capacity_problem(s, 60, new_tokens).empty();
        bool model_fits = true;
        try {
            GenerateOptions go;
            go.max_new_tokens = new_tokens;
            go.ignore_eos = true;
            run_generate_job(s, prompt, go);
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("does not fit in memory"));
            model_fits = false;
        }
        EXPECT_EQ(precheck_fits, model_fits);
    }
    EXPECT_TRUE(capacity_problem(s, 60, 5).empty());
    EXPECT_FALSE(capacity_problem(s, 60, 6).empty());
}

// The closed form behind capacity_problem() equals feeding the tokens one by one, and stays
// O(1) for a count no loop could finish (--max-new-tokens 9e18; the ctest timeout guards).
TEST(Capacity, GenerationGrowthClosedFormMatchesTheLoop) {
    auto loop = [](int64_t need, int64_t local, int64_t W, int64_t new_tokens) {
        for (int64_t k = 1; k < new_tokens; ++k) {
            if (local + 1 > W) {
                need += local;
                local = 0;
            }
            ++local;
        }
        return need;
    };
    for (int64_t W : {1, 2, 3, 7, 36}) {
        for (int64_t local = 0; local <= W + 2; ++local) {
            for (int64_t n = 0; n < 5 * W + 4; ++n) {
                SCOPED_TRACE(::testing::Message() << "W " << W << " local " << local << " n " << n);
                EXPECT_EQ(generation_memory_tokens(11, local, W, n), loop(11, local, W, n));
            }
        }
    }
    const int64_t huge = 9000000000000000000;
    EXPECT_EQ(generation_memory_tokens(0, 0, 36, huge), (huge - 2) / 36 * 36);
    EXPECT_EQ(generation_memory_tokens(INT64_MAX - 5, 36, 36, huge), INT64_MAX);
    EXPECT_EQ(generation_memory_tokens(0, 1, 1, INT64_MAX), INT64_MAX - 1);
}

class BatchInProcess : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("fot_batch_test_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    fs::path dir_;
};

TEST_F(BatchInProcess, RecordsErrorsSummaryAndResume) {
    auto m = open_model(golden("case_a"), 150);
    Session& s = *m->session;
    const auto ids = read_json(golden("case_a") + "/input_ids.json").get<std::vector<int32_t>>();
    const std::string corpus = (dir_ / "c.jsonl").string();
    {
        std::ofstream out(corpus);
        out << nlohmann::json({{"id", "full"}, {"ids", ids}}).dump() << "\n";
        out << nlohmann::json(
                   {{"id", "short"}, {"ids", std::vector<int32_t>(ids.begin(), ids.begin() + 20)}})
                   .dump()
            << "\n";
        out << "{\"id\": \"broken\"\n";
        out << "{\"id\": \"one\", \"ids\": [1]}\n";
        out << nlohmann::json({{"id", "huge"}, {"ids", std::vector<int32_t>(250, 7)}}).dump()
            << "\n";
    }
    BatchOptions o;
    o.corpus.path = corpus;
    o.output = (dir_ / "out.jsonl").string();
    o.summary_path = (dir_ / "summary.json").string();
    o.progress_interval_s = 0;
    BatchResult r = run_batch_job(s, o);
    EXPECT_EQ(r.documents, 5);
    EXPECT_EQ(r.written, 5);
    EXPECT_EQ(r.errors, 3);
    EXPECT_EQ(r.exit_code, kExitErrorRecords);

    const auto recs = read_jsonl(o.output);
    ASSERT_EQ(recs.size(), 5u);
    EXPECT_EQ(recs[0]["id"], "full");
    EXPECT_EQ(recs[0]["tokens"], 149);
    EXPECT_NEAR(recs[0]["nll_sum"].get<double>(), score_document(s, ids).nll_sum, 1e-9);
    EXPECT_EQ(recs[1]["tokens"], 19);
    EXPECT_THAT(recs[2]["error"].get<std::string>(), HasSubstr("line 3: not valid JSON"));
    EXPECT_TRUE(recs[2]["id"].is_null());
    EXPECT_THAT(recs[3]["error"].get<std::string>(), HasSubstr("at least 2 tokens"));
    EXPECT_THAT(recs[4]["error"].get<std::string>(), HasSubstr("needs 218 memory tokens"));
    for (size_t i = 0; i < recs.size(); ++i) EXPECT_EQ(recs[i]["index"], i);

    const auto sum = nlohmann::json::parse(r.summary_json);
    EXPECT_EQ(sum["errors"], 3);
    EXPECT_EQ(sum["ok"], 2);
    EXPECT_EQ(sum["this_run"]["documents"], 5);
    EXPECT_EQ(sum["this_run"]["tokens"], 150 + 20);
    EXPECT_EQ(sum["ranks"].size(), 1u);
    EXPECT_EQ(sum["exit_code"], kExitErrorRecords);
    EXPECT_EQ(read_json(o.summary_path), sum);

    // A rerun finds everything journaled: nothing runs, the output is unchanged.
    std::ifstream before(o.output);
    std::stringstream b;
    b << before.rdbuf();
    BatchResult again = run_batch_job(s, o);
    EXPECT_EQ(again.written, 5);
    EXPECT_EQ(again.exit_code, kExitErrorRecords);
    EXPECT_EQ(nlohmann::json::parse(again.summary_json)["this_run"]["documents"], 0);
    EXPECT_EQ(nlohmann::json::parse(again.summary_json)["resumed"], 5);
    std::ifstream after(o.output);
    std::stringstream a;
    a << after.rdbuf();
    EXPECT_EQ(a.str(), b.str());

    // Another job (generate) may not continue this output.
    o.task = BatchTask::kGenerate;
    try {
        run_batch_job(s, o);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("belongs to a different job: task"));
    }
}

TEST_F(BatchInProcess, GenerateEqualsGoldenGreedy) {
    auto m = open_model(golden("case_a"));
    Session& s = *m->session;
    const auto greedy = read_json(golden("case_a") + "/greedy.json");
    const auto ids = read_json(golden("case_a") + "/input_ids.json").get<std::vector<int32_t>>();
    const std::string corpus = (dir_ / "p.jsonl").string();
    std::ofstream(corpus) << nlohmann::json({{"id", 1}, {"ids", ids}}).dump() << "\n";
    BatchOptions o;
    o.task = BatchTask::kGenerate;
    o.corpus.path = corpus;
    o.output = (dir_ / "gen.jsonl").string();
    o.max_new_tokens = 16;
    o.ignore_eos = true;
    o.progress_interval_s = 0;
    BatchResult r = run_batch_job(s, o);
    EXPECT_EQ(r.exit_code, 0);
    const auto recs = read_jsonl(o.output);
    ASSERT_EQ(recs.size(), 1u);
    EXPECT_EQ(recs[0]["id"], 1);
    EXPECT_EQ(recs[0]["prompt_tokens"], ids.size());
    EXPECT_EQ(recs[0]["new_tokens"], greedy["new_tokens"]);
    EXPECT_FALSE(recs[0].contains("text"));
}

TEST_F(BatchInProcess, TextInputWithoutTokenizerIsAJobError) {
    auto m = open_model(golden("case_a"));
    const std::string corpus = (dir_ / "t.jsonl").string();
    std::ofstream(corpus) << "{\"id\": 1, \"text\": \"hello\"}\n";
    BatchOptions o;
    o.corpus.path = corpus;
    o.output = (dir_ / "o.jsonl").string();
    try {
        run_batch_job(*m->session, o);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("has no tokenizer.model"));
    }
}

}  // namespace
}  // namespace fot
