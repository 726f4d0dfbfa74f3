// Passkey prompts: the reference's text layout, the key once at the requested depth, the token
// length within 1% of the request, and a deterministic trial plan.
#include "runtime/jobs/passkey.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "runtime/core/status.h"

namespace fot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
}

class PasskeyTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = new fs::path(fs::temp_directory_path() /
                            ("fot_passkey_test_" + std::to_string(::getpid())));
        fs::create_directories(*dir_);
        // Text like the prompts (filler, task, key lines with numbers), a few KB.
        std::mt19937 rng(7);
        std::string text;
        for (int i = 0; i < 200; ++i) {
            text += passkey_prompt_text(40 + rng() % 200, 0.5, 1 + rng() % 49999).text + "\n";
        }
        const fs::path corpus = *dir_ / "corpus.txt";
        std::ofstream(corpus) << text;
        const std::string args = "--input=" + corpus.string() +
                                 " --model_prefix=" + (*dir_ / "m").string() +
                                 " --vocab_size=200 --model_type=bpe --character_coverage=1.0"
                                 " --byte_fallback=false --unk_id=0 --bos_id=1 --eos_id=2"
                                 " --pad_id=-1 --num_threads=1 --minloglevel=2";
        auto status = sentencepiece::SentencePieceTrainer::Train(args);
        ASSERT_TRUE(status.ok()) << status.ToString();
        tok_ = Tokenizer::load((*dir_ / "m.model").string()).release();
    }
    static void TearDownTestSuite() {
        delete tok_;
        fs::remove_all(*dir_);
        delete dir_;
    }

    static fs::path* dir_;
    static Tokenizer* tok_;
};

fs::path* PasskeyTest::dir_ = nullptr;
Tokenizer* PasskeyTest::tok_ = nullptr;

TEST(PasskeyText, ReferenceLayout) {
    EXPECT_EQ(passkey_filler(25), "The grass is green. The s");
    // " ".join([garbage] * k): repeats are separated by one space.
    const std::string two = passkey_filler(2 * 89 + 1);
    EXPECT_EQ(two.substr(88, 5), ". The");
    EXPECT_EQ(count(two, "There and back again."), 2u);

    PasskeyPrompt p = passkey_prompt_text(100, 0.25, 4242);
    EXPECT_EQ(p.n_prefix, 25);
    EXPECT_EQ(p.answer, "4242");
    const std::string expected =
        "There is an important info hidden inside a lot of irrelevant text. Find it and "
        "memorize them. I will quiz you about the important information there.\n" +
        passkey_filler(25) + "\nThe pass key is 4242. Remember it. 4242 is the pass key.\n" +
        passkey_filler(75) + "\nWhat is the pass key? The pass key is";
    EXPECT_EQ(p.text, expected);
    EXPECT_EQ(p.text.compare(p.key_char_offset, 20, "The pass key is 4242"), 0);
    EXPECT_THROW(passkey_prompt_text(100, 1.5, 1), Error);
}

TEST_F(PasskeyTest, KeyOnceAtDepthAndLengthWithinOnePercent) {
    for (int64_t target : {300, 1000, 4000}) {
        for (double depth : {0.0, 0.3, 0.5, 1.0}) {
            SCOPED_TRACE(::testing::Message() << target << " tokens, depth " << depth);
            const int key = 10000 + static_cast<int>(target) + static_cast<int>(depth * 100);
            PasskeyPrompt p = make_passkey_prompt(*tok_, target, depth, key);
            const double got = static_cast<double>(p.ids.size());
            EXPECT_LE(std::abs(got - static_cast<double>(target)), 0.01 * target);
            EXPECT_EQ(p.ids.front(), tok_->bos_id());
            EXPECT_EQ(count(p.text, "The pass key is " + p.answer + "."), 1u);
            EXPECT_EQ(count(p.text, p.answer), 2u);  // "K. Remember it. K is the pass key."
            EXPECT_EQ(p.text.find("The pass key is " + p.answer),
                      static_cast<size_t>(p.key_char_offset));
            // The filler before the key is the requested share of all filler ...
            EXPECT_NEAR(static_cast<double>(p.n_prefix), depth * p.n_garbage, 0.5);
            // ... and so is the key's token position, around the fixed lines.
            const double key_token =
                static_cast<double>(tok_->encode(p.text.substr(0, p.key_char_offset)).size());
            const PasskeyPrompt bare = passkey_prompt_text(0, depth, key);
            const double fixed = static_cast<double>(tok_->encode(bare.text).size());
            const double before =
                static_cast<double>(tok_->encode(bare.text.substr(0, bare.key_char_offset)).size());
            EXPECT_NEAR(key_token, before + depth * (got - fixed), 3 + 0.01 * got);
            EXPECT_EQ(tok_->decode(p.answer_ids), p.answer);
        }
    }
}

TEST_F(PasskeyTest, TooShortIsAnError) {
    try {
        make_passkey_prompt(*tok_, 20, 0.5, 123);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("passkey length 20 tokens is too short"));
    }
}

TEST(PasskeyPlanTest, DeterministicAndIndependentOfOtherLengths) {
    PasskeyPlan plan;
    plan.lengths = {2048, 8192};
    plan.trials = 50;
    plan.seed = 3;
    const auto a = plan_passkey_trials(plan);
    ASSERT_EQ(a.size(), 100u);
    const auto b = plan_passkey_trials(plan);
    PasskeyPlan only;
    only = plan;
    only.lengths = {8192};
    const auto c = plan_passkey_trials(only);
    std::set<int> keys;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].key, b[i].key);
        EXPECT_EQ(a[i].depth, b[i].depth);
        EXPECT_GE(a[i].key, 1);
        EXPECT_LT(a[i].key, 50000);
        EXPECT_GE(a[i].depth, 0.0);
        EXPECT_LE(a[i].depth, 1.0);
        EXPECT_EQ(a[i].depth_index, std::min<int64_t>(4, static_cast<int64_t>(a[i].depth * 5)));
        keys.insert(a[i].key);
    }
    EXPECT_GT(keys.size(), 90u);  // keys vary
    for (size_t i = 0; i < c.size(); ++i) {
        EXPECT_EQ(c[i].key, a[50 + i].key);
        EXPECT_EQ(c[i].depth, a[50 + i].depth);
        EXPECT_EQ(c[i].length_index, 0);
    }
    plan.seed = 4;
    EXPECT_NE(plan_passkey_trials(plan)[0].key, a[0].key);

    EXPECT_EQ(passkey_depth_labels(plan),
              (std::vector<std::string>{"0-20%", "20-40%", "40-60%", "60-80%", "80-100%"}));
    plan.depths = {0.0, 0.5, 1.0};
    plan.trials = 2;
    const auto fixed = plan_passkey_trials(plan);
    ASSERT_EQ(fixed.size(), 12u);
    EXPECT_EQ(fixed[2].depth, 0.5);
    EXPECT_EQ(fixed[2].depth_index, 1);
    EXPECT_EQ(passkey_depth_labels(plan), (std::vector<std::string>{"0", "0.5", "1"}));
    plan.depths = {1.5};
    EXPECT_THROW(plan_passkey_trials(plan), Error);
}

}  // namespace
}  // namespace fot
