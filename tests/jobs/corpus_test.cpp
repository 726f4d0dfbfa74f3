// Corpus readers: JSONL records (valid and every kind of malformed one), .txt directories,
// token .bin files with offsets, and the wire form of documents.
#include "runtime/jobs/corpus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/core/status.h"
#include "runtime/io/quote.h"
#include "runtime/jobs/batch_job.h"

namespace fot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class CorpusTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("fot_corpus_test_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string write(const std::string& name, const std::string& bytes) {
        const fs::path p = dir_ / name;
        fs::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << bytes;
        return p.string();
    }
    template <typename T>
    std::string write_array(const std::string& name, const std::vector<T>& v) {
        return write(name,
                     std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
    }

    fs::path dir_;
};

Document parse(const std::string& line, int64_t vocab = 100) {
    Document d;
    parse_jsonl_record(line, vocab, d);
    return d;
}

TEST(JsonlRecord, ValidTextAndIds) {
    Document t = parse(R"({"id": "doc-1", "text": "hello world"})");
    EXPECT_EQ(t.error, "");
    EXPECT_TRUE(t.has_text);
    EXPECT_EQ(t.text, "hello world");
    EXPECT_EQ(t.id_json, "\"doc-1\"");

    Document i = parse(R"({"ids": [1, 5, 99], "id": 17})");
    EXPECT_EQ(i.error, "");
    EXPECT_FALSE(i.has_text);
    EXPECT_EQ(i.ids, (std::vector<int32_t>{1, 5, 99}));
    EXPECT_EQ(i.id_json, "17");
}

TEST(JsonlRecord, MalformedRecordsSayWhy) {
    struct Case {
        const char* line;
        const char* why;
    };
    const Case cases[] = {
        {R"({"id": 1, "text": "x")", "not valid JSON"},
        {R"([1, 2])", "expected a JSON object"},
        {R"({"text": "x"})", "missing \"id\""},
        {R"({"id": 1.5, "text": "x"})", "\"id\" must be a string or an integer"},
        {R"({"id": 1, "text": "x", "lang": "en"})", "unknown field \"lang\""},
        {R"({"id": 1, "text": "x", "ids": [1]})", "both \"text\" and \"ids\""},
        {R"({"id": 1})", "missing \"text\" or \"ids\""},
        {R"({"id": 1, "text": ""})", "empty text"},
        {R"({"id": 1, "text": 5})", "\"text\" must be a string"},
        {R"({"id": 1, "ids": "1 2"})", "\"ids\" must be a list"},
        {R"({"id": 1, "ids": [1, "2"]})", "\"ids\"[1] is not an integer"},
        {R"({"id": 1, "ids": [1, -2]})", "token id -2 at position 1 is negative"},
        {R"({"id": 1, "ids": [1, 100]})",
         "token id 100 at position 1 is out of the vocabulary [0, 100)"},
        {R"({"id": 1, "ids": []})", "empty document"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.line);
        Document d = parse(c.line);
        EXPECT_THAT(d.error, HasSubstr(c.why));
        EXPECT_EQ(d.error.find('\n'), std::string::npos);
    }
    // The id survives in error records whenever it could be read.
    EXPECT_EQ(parse(R"({"id": "k", "text": ""})").id_json, "\"k\"");
    EXPECT_EQ(parse("{oops").id_json, "null");
}

// Ill-formed UTF-8 in a record: an error record like any other, whose reason shows the bad
// bytes as \xNN and can be written as JSON (the parser's message quotes them; writing them
// raw made the JSON writer throw and ended the job on every rerun).
TEST(JsonlRecord, InvalidUtf8IsAnErrorRecord) {
    const std::string lines[] = {
        "{\"id\": \"u\", \"text\": \"caf\xe9 au lait\"}",  // Latin-1, not UTF-8
        "{\"id\": \"u\", \"text\": \"\xff\xfe\"}",
        "{\"id\": \"\xc3\x28\", \"ids\": [1]}",         // bad continuation byte in the id
        "{\"id\": \"u\", \"text\": \"\xed\xa0\x80\"}",  // a UTF-16 surrogate
        "\xef\xbb\xbf{\"id\": \"bom\", \"ids\": [1, 2]}\xc0",
    };
    for (const std::string& line : lines) {
        SCOPED_TRACE(line);
        Document d = parse(line);
        ASSERT_FALSE(d.error.empty());
        EXPECT_THAT(d.error, HasSubstr("\\x"));
        const std::string record = error_record_json(d.id_json, 4, "line 9: " + d.error);
        nlohmann::json j = nlohmann::json::parse(record);  // valid JSON, valid UTF-8
        EXPECT_EQ(j["index"], 4);
        EXPECT_THAT(j["error"].get<std::string>(), HasSubstr("line 9: not valid JSON"));
    }
    // Any reason, whatever its bytes, makes a record.
    const std::string raw = "bad \xff\xc3 bytes \xe2\x82";
    nlohmann::json j = nlohmann::json::parse(error_record_json("\"x\"", 0, raw));
    EXPECT_EQ(j["error"], "bad \\xff\\xc3 bytes \\xe2\\x82");
    EXPECT_EQ(escape_invalid_utf8("ok: caf\xc3\xa9 \xf0\x9f\x98\x80"),
              "ok: caf\xc3\xa9 \xf0\x9f\x98\x80");
    EXPECT_EQ(escape_invalid_utf8("\xe0\x80\x80|\xf4\x90\x80\x80"),
              "\\xe0\\x80\\x80|\\xf4\\x90\\x80\\x80");  // overlong, above U+10FFFF
}

TEST_F(CorpusTest, JsonlSkipsBlankLinesAndFlagsDuplicates) {
    const std::string path = write("c.jsonl",
                                   "{\"id\": \"a\", \"ids\": [1, 2, 3]}\n"
                                   "\n"
                                   "{\"id\": \"b\", \"text\": \"0123456789abcdef\"}\n"
                                   "not json\n"
                                   "{\"id\": \"a\", \"ids\": [4, 5]}\n"
                                   "   \n"
                                   "{\"id\": 7, \"ids\": [9]}");  // no final newline
    CorpusSpec spec;
    spec.path = path;
    spec.vocab_size = 50;
    auto c = Corpus::open(spec);
    ASSERT_EQ(c->size(), 5);
    EXPECT_TRUE(c->has_text());
    EXPECT_EQ(c->cost_hint(0), 3);
    EXPECT_EQ(c->cost_hint(1), 4);  // 16 bytes of text / 4
    Document a = c->read(0);
    EXPECT_EQ(a.error, "");
    EXPECT_EQ(a.ids, (std::vector<int32_t>{1, 2, 3}));
    EXPECT_EQ(c->read(1).text, "0123456789abcdef");
    Document bad = c->read(2);
    EXPECT_THAT(bad.error, HasSubstr("line 4: not valid JSON"));
    EXPECT_EQ(bad.index, 2);
    Document dup = c->read(3);
    EXPECT_THAT(dup.error,
                HasSubstr("line 5: duplicate id \"a\" (first used by record 0, line 1)"));
    EXPECT_TRUE(dup.ids.empty());
    EXPECT_EQ(c->read(4).ids, std::vector<int32_t>{9});
    EXPECT_THAT(c->describe(), HasSubstr("5 records"));
}

TEST_F(CorpusTest, TextDirectoryInNameOrder) {
    write("books/b.txt", "second");
    write("books/a.txt", "first");
    write("books/empty.txt", "");
    write("books/notes.md", "ignored");
    CorpusSpec spec;
    spec.path = (dir_ / "books").string();
    auto c = Corpus::open(spec);
    ASSERT_EQ(c->size(), 3);
    EXPECT_EQ(c->read(0).id_json, "\"a.txt\"");
    EXPECT_EQ(c->read(0).text, "first");
    EXPECT_EQ(c->read(1).id_json, "\"b.txt\"");
    EXPECT_THAT(c->read(2).error, HasSubstr("empty text"));
    EXPECT_TRUE(c->has_text());

    fs::create_directories(dir_ / "none");
    write("none/x.md", "x");
    spec.path = (dir_ / "none").string();
    try {
        Corpus::open(spec);
        FAIL() << "no error for a directory without .txt files";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("holds no .txt files"));
    }
}

TEST_F(CorpusTest, TokenBinaryU16AndU32) {
    const std::vector<uint64_t> offsets = {0, 3, 3, 5};
    for (int width : {2, 4}) {
        SCOPED_TRACE(width);
        std::string data;
        if (width == 2) {
            data = write_array<uint16_t>("t.bin", {1, 2, 3, 40, 60000});
        } else {
            data = write_array<uint32_t>("t.bin", {1, 2, 3, 40, 70000});
        }
        write_array<uint64_t>("t.offsets", offsets);
        CorpusSpec spec;
        spec.path = data;
        spec.vocab_size = 100;
        auto c = Corpus::open(spec);
        ASSERT_EQ(c->size(), 3);
        EXPECT_FALSE(c->has_text());
        EXPECT_EQ(c->read(0).ids, (std::vector<int32_t>{1, 2, 3}));
        EXPECT_EQ(c->read(0).id_json, "0");
        EXPECT_EQ(c->cost_hint(2), 2);
        EXPECT_THAT(c->read(1).error, HasSubstr("empty document"));
        EXPECT_THAT(c->read(2).error, HasSubstr("at position 1 is out of the vocabulary [0, 100)"));
        EXPECT_THAT(c->describe(), HasSubstr(width == 2 ? "uint16" : "uint32"));
        // A width that contradicts the file sizes.
        spec.token_bytes = width == 2 ? 4 : 2;
        try {
            Corpus::open(spec);
            FAIL() << "no error for a wrong --token-dtype";
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("t.offsets ends at 5 tokens"));
        }
    }
}

TEST_F(CorpusTest, CorruptOffsetsAreJobErrors) {
    const std::string data = write_array<uint16_t>("t.bin", {1, 2, 3, 4});
    CorpusSpec spec;
    spec.path = data;
    auto expect_error = [&](const std::string& what) {
        try {
            Corpus::open(spec);
            ADD_FAILURE() << "no error, expected " << what;
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr(what));
        }
    };
    expect_error("offsets file " + (dir_ / "t.offsets").string() + " does not exist");
    write_array<uint64_t>("t.offsets", {1, 4});
    expect_error("the first offset must be 0");
    write_array<uint64_t>("t.offsets", {0, 3, 2, 4});
    expect_error("offset 2 (2) is smaller than offset 1 (3)");
    write("t.offsets", "abc");
    expect_error("is not a list of n + 1 >= 1 little-endian uint64 offsets");
    write_array<uint64_t>("t.offsets", {0, 3});  // 8 bytes for 3 tokens: neither width
    expect_error("neither uint16");
    // Last offsets whose byte size wraps to the 8 bytes of the file (2^62 + 2 uint32 tokens,
    // 2^63 + 4 uint16 tokens): documents past the mapping, never readable.
    const uint64_t wrap4 = (uint64_t{1} << 62) + 2, wrap2 = (uint64_t{1} << 63) + 4;
    for (int width : {0, 4}) {
        spec.token_bytes = width;
        write_array<uint64_t>("t.offsets", {0, 1, wrap4});
        expect_error("ends at " + std::to_string(wrap4) + " tokens");
    }
    for (int width : {0, 2}) {
        spec.token_bytes = width;
        write_array<uint64_t>("t.offsets", {0, 2, wrap2});
        expect_error("ends at " + std::to_string(wrap2) + " tokens");
    }
    spec.token_bytes = 0;
    // An explicit offsets path.
    const std::string other = write_array<uint64_t>("elsewhere.idx", {0, 4});
    spec.offsets_path = other;
    EXPECT_EQ(Corpus::open(spec)->size(), 1);
}

TEST(DocumentWire, RoundTripAndTruncation) {
    Document a;
    a.index = 42;
    a.id_json = "\"x\"";
    a.ids = {1, 2, 3};
    Document b = deserialize_document(serialize_document(a));
    EXPECT_EQ(b.index, 42);
    EXPECT_EQ(b.id_json, "\"x\"");
    EXPECT_EQ(b.ids, a.ids);
    EXPECT_FALSE(b.has_text);

    Document t;
    t.has_text = true;
    t.text = std::string("with\0nul", 8);
    t.error = "";
    EXPECT_EQ(deserialize_document(serialize_document(t)).text, t.text);

    std::string bytes = serialize_document(a);
    EXPECT_THROW(deserialize_document(bytes.substr(0, bytes.size() - 1)), Error);
}

TEST(TokenWidth, Names) {
    int w = 0;
    EXPECT_TRUE(parse_token_width("u16", &w));
    EXPECT_EQ(w, 2);
    EXPECT_TRUE(parse_token_width("uint32", &w));
    EXPECT_EQ(w, 4);
    EXPECT_FALSE(parse_token_width("u8", &w));
}

}  // namespace
}  // namespace fot
