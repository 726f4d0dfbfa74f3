// Tokenizer: LLaMA conventions on a tiny sentencepiece model trained here (ids as in LLaMA:
// unk 0, bos 1, eos 2, no pad; identity normalisation and byte fallback like LLaMA's model).
#include "runtime/io/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/status.h"

namespace fot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kVocab = 400;

class TokenizerTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = new fs::path(fs::temp_directory_path() /
                            ("fot_tokenizer_test_" + std::to_string(::getpid())));
        fs::create_directories(*dir_);
        // A few KB of text from a fixed word list, shuffled by a seeded generator.
        const std::vector<std::string> words = {
            "the",   "memory",  "attention", "window",      "token",  "model",
            "long",  "context", "focused",   "transformer", "key",    "value",
            "layer", "cache",   "retrieval", "passkey",     "number", "is",
            "of",    "and",     "a",         "in",          "to",     "zażółć",
            "gęślą", "jaźń",    "日本語",    "über",        "naïve",  "café",
            "2048",  "12345",   "3.14",      "(x)",         "hello,", "world."};
        std::mt19937 rng(1234);
        std::string text;
        for (int line = 0; line < 120; ++line) {
            for (int w = 0; w < 12; ++w) {
                if (w) text += ' ';
                text += words[rng() % words.size()];
            }
            text += '\n';
        }
        fs::path corpus = *dir_ / "corpus.txt";
        std::ofstream(corpus) << text;
        model_ = new std::string((*dir_ / "m.model").string());
        std::string args = "--input=" + corpus.string() +
                           " --model_prefix=" + (*dir_ / "m").string() +
                           " --vocab_size=" + std::to_string(kVocab) +
                           " --model_type=bpe --character_coverage=1.0 --byte_fallback=true"
                           " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1"
                           " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                           " --num_threads=1 --minloglevel=2";
        auto status = sentencepiece::SentencePieceTrainer::Train(args);
        ASSERT_TRUE(status.ok()) << status.ToString();
    }

    static void TearDownTestSuite() {
        fs::remove_all(*dir_);
        delete dir_;
        delete model_;
    }

    static fs::path* dir_;
    static std::string* model_;
};

fs::path* TokenizerTest::dir_ = nullptr;
std::string* TokenizerTest::model_ = nullptr;

const std::vector<std::string> kTexts = {
    "the memory attention window",
    "Hello, world.",
    "  two leading spaces and  a double one",
    "numbers 12345 and 3.14 and 2048",
    "zażółć gęślą jaźń — 日本語 über café",
    "unseen bytes: 🙂 ✓ \t tab",
    "line one\nline two",
    "x",
};

std::string error_of(const std::string& path) {
    try {
        Tokenizer::load(path);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error for " << path;
    return "";
}

TEST_F(TokenizerTest, SpecialIdsAndVocab) {
    auto tok = Tokenizer::load(*model_);
    EXPECT_EQ(tok->vocab_size(), kVocab);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
}

TEST_F(TokenizerTest, RoundTrip) {
    auto tok = Tokenizer::load(*model_);
    for (const auto& text : kTexts) {
        SCOPED_TRACE(text);
        std::vector<int32_t> ids = tok->encode(text);
        EXPECT_EQ(tok->decode(ids), text);
        for (int32_t id : ids) {
            EXPECT_GE(id, 0);
            EXPECT_LT(id, tok->vocab_size());
        }
    }
}

TEST_F(TokenizerTest, BosFirstAndOnceNoEos) {
    auto tok = Tokenizer::load(*model_);
    for (const auto& text : kTexts) {
        SCOPED_TRACE(text);
        std::vector<int32_t> ids = tok->encode(text);
        ASSERT_GE(ids.size(), 2u);
        EXPECT_EQ(ids[0], tok->bos_id());
        EXPECT_EQ(std::count(ids.begin(), ids.end(), tok->bos_id()), 1);
        EXPECT_EQ(std::count(ids.begin(), ids.end(), tok->eos_id()), 0);

        std::vector<int32_t> bare = tok->encode(text, /*add_bos=*/false);
        EXPECT_EQ(std::vector<int32_t>(ids.begin() + 1, ids.end()), bare);
    }
    EXPECT_EQ(tok->encode(""), std::vector<int32_t>{tok->bos_id()});
}

TEST_F(TokenizerTest, DecodeIgnoresControlIds) {
    auto tok = Tokenizer::load(*model_);
    const std::string text = "the long context";
    std::vector<int32_t> ids = tok->encode(text, false);
    std::vector<int32_t> wrapped = {tok->bos_id()};
    wrapped.insert(wrapped.end(), ids.begin(), ids.end());
    wrapped.push_back(tok->eos_id());
    wrapped.push_back(tok->bos_id());
    EXPECT_EQ(tok->decode(wrapped), text);
    EXPECT_EQ(tok->decode({tok->bos_id(), tok->eos_id()}), "");
}

TEST_F(TokenizerTest, PiecesConcatenateToTheText) {
    // Streaming output: the pieces joined give the text with sentencepiece's dummy-prefix
    // space in front; BOS contributes nothing.
    auto tok = Tokenizer::load(*model_);
    for (const auto& text : kTexts) {
        SCOPED_TRACE(text);
        std::string joined;
        for (int32_t id : tok->encode(text)) joined += tok->id_to_piece(id);
        EXPECT_EQ(joined, " " + text);
    }
    EXPECT_EQ(tok->id_to_piece(tok->eos_id()), "");
}

TEST_F(TokenizerTest, IdsWithoutAPieceAreVisiblePlaceholders) {
    // A padded model vocabulary generates ids the tokenizer has no piece for: they show as
    // "<id:N>" where they came, and the known ids around them decode as before.
    auto tok = Tokenizer::load(*model_);
    const std::string text = kTexts[0];
    std::vector<int32_t> ids = tok->encode(text, /*add_bos=*/false);
    ASSERT_GE(ids.size(), 2u);
    const std::vector<int32_t> head(ids.begin(), ids.begin() + 1);
    const std::vector<int32_t> tail(ids.begin() + 1, ids.end());
    std::vector<int32_t> mixed = head;
    mixed.push_back(kVocab);
    mixed.insert(mixed.end(), tail.begin(), tail.end());
    mixed.push_back(kVocab + 7);
    EXPECT_EQ(tok->decode(mixed), tok->decode(head) + "<id:400>" + tok->decode(tail) + "<id:407>");
    EXPECT_EQ(tok->decode({-1}), "<id:-1>");
    EXPECT_EQ(tok->id_to_piece(kVocab + 7), "<id:407>");
    EXPECT_EQ(Tokenizer::placeholder(319), "<id:319>");
}

TEST_F(TokenizerTest, MorePiecesThanTheModelVocabularyIsAnError) {
    auto tok = Tokenizer::load(*model_);
    check_tokenizer_vocab(*tok, *model_, kVocab, "m/config.json");       // equal: fine
    check_tokenizer_vocab(*tok, *model_, kVocab + 64, "m/config.json");  // padded: fine
    try {
        check_tokenizer_vocab(*tok, *model_, kVocab - 1, "m/config.json");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("has 400 pieces but the model's vocab_size is 399"));
        EXPECT_THAT(e.what(), HasSubstr("m/config.json"));
    }
}

TEST_F(TokenizerTest, LoadErrorsNameTheFile) {
    std::string missing = (*dir_ / "missing.model").string();
    EXPECT_THAT(error_of(missing), HasSubstr(missing));

    std::string corrupt = (*dir_ / "corrupt.model").string();
    std::ofstream(corrupt, std::ios::binary) << std::string("\x0a\xff\xff\xff\xffgarbage", 12);
    EXPECT_THAT(error_of(corrupt), HasSubstr(corrupt));

    std::string text = (*dir_ / "config.json").string();
    std::ofstream(text) << "{\"hidden_size\": 64}\n";
    EXPECT_THAT(error_of(text), HasSubstr(text));

    std::string empty = (*dir_ / "empty.model").string();
    std::ofstream(empty).flush();
    EXPECT_THAT(error_of(empty), HasSubstr(empty));

    EXPECT_THAT(error_of(dir_->string()), HasSubstr(dir_->string()));
}

}  // namespace
}  // namespace fot
