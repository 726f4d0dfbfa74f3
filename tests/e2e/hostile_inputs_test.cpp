// The hostile-input suite (issue [F10]): inputs a user, a broken pipeline or a second job can
// hand fotrt, each generated here, each of which once ended in a crash, an out-of-bounds
// access or a destroyed input. One table; every case runs the real binary (FOTRT_EXE) and
// asserts its exit code (never a signal), exactly one error line on stderr naming the problem
// (exit 1) or an error record in the output (exit 3), and that its input files are unchanged
// byte for byte. Carries the io label, so CI also runs it on the sanitizer build
// (scripts/test.sh). A frozen rank and two concurrent jobs are tests/jobs/frozen_rank.sh and
// tests/jobs/concurrent_output.sh.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/io/io_test_util.h"

namespace fot {
namespace {

namespace fs = std::filesystem;
using test::Bytes;
using test::TempDir;
using Json = nlohmann::json;

const std::string kCaseA = test::golden_dir() + "/case_a";

// A copy of golden case_a in dir/m with `edit` applied to its config.json.
std::string model_with(const std::string& dir, const std::function<void(Json&)>& edit) {
    const std::string m = dir + "/m";
    fs::create_directories(m);
    fs::copy_file(kCaseA + "/model.safetensors", m + "/model.safetensors");
    Json c = Json::parse(test::read_bytes(kCaseA + "/config.json"));
    edit(c);
    test::write_text(m + "/config.json", c.dump(2));
    return m;
}

std::string ids_file(const std::string& dir) {
    const std::string p = dir + "/ids.json";
    test::write_text(p, "[1, 17, 42, 99, 5]");
    return p;
}

// Five small valid records, then `bad` (raw bytes), then two more valid ones.
std::string jsonl_with(const std::string& dir, const std::string& bad) {
    std::string text;
    for (int i = 0; i < 5; ++i) {
        text += "{\"id\": \"d" + std::to_string(i) + "\", \"ids\": [1, " + std::to_string(10 + i) +
                ", 7, 9]}\n";
    }
    text += bad + "\n";
    text += "{\"id\": \"d6\", \"ids\": [1, 2, 3]}\n{\"id\": \"d7\", \"ids\": [1, 4, 5]}\n";
    const std::string p = dir + "/c.jsonl";
    test::write_text(p, text);
    return p;
}

std::string one_doc(const std::string& dir) {
    test::write_text(dir + "/c.jsonl", "{\"id\": \"d0\", \"ids\": [1, 17, 42]}\n");
    return dir + "/c.jsonl";
}

std::string plain_jsonl(const std::string& dir) {
    return jsonl_with(dir, "{\"id\": \"d5\", \"ids\": [1, 2]}");
}

// A uint16 token corpus t.bin (4 tokens) with the given offsets in t.offsets.
std::string token_corpus(const std::string& dir, const std::vector<uint64_t>& offsets) {
    Bytes data;
    for (uint16_t t : {1, 2, 3, 4}) test::put_le(data, t, 2);
    test::write_bytes(dir + "/t.bin", data);
    Bytes off;
    for (uint64_t o : offsets) test::put_le(off, o, 8);
    test::write_bytes(dir + "/t.offsets", off);
    return dir + "/t.bin";
}

// A copy of golden case_a in dir/m whose config.json is `text` (raw bytes).
std::string model_with_config_text(const std::string& dir, const std::string& text) {
    const std::string m = dir + "/m";
    fs::create_directories(m);
    fs::copy_file(kCaseA + "/model.safetensors", m + "/model.safetensors");
    test::write_text(m + "/config.json", text);
    return m;
}

std::string case_a_config_text() {
    const Bytes b = test::read_bytes(kCaseA + "/config.json");
    return std::string(b.begin(), b.end());
}

// A copy of golden case_a in dir/m whose safetensors header is followed, inside its declared
// length, by `tail` (the data section is unchanged: its offsets are relative to its start).
std::string model_with_header_tail(const std::string& dir, const std::string& tail) {
    const std::string m = model_with(dir, [](Json&) {});
    const Bytes b = test::read_bytes(m + "/model.safetensors");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | b[static_cast<size_t>(i)];
    std::string header(b.begin() + 8, b.begin() + 8 + static_cast<ptrdiff_t>(n));
    header = header.substr(0, header.find_last_not_of(' ') + 1) + tail;
    Bytes out;
    test::put_le(out, header.size(), 8);
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), b.begin() + 8 + static_cast<ptrdiff_t>(n), b.end());
    test::write_bytes(m + "/model.safetensors", out);
    return m;
}

// Holds an flock on `path` (as another job would) until the case ends.
struct HeldLock {
    int fd = -1;
    explicit HeldLock(const std::string& path) {
        fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
        EXPECT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0) << path;
        const std::string who = "pid 4242 on host elsewhere, started yesterday\n";
        EXPECT_EQ(::write(fd, who.data(), who.size()), static_cast<ssize_t>(who.size()));
    }
    ~HeldLock() { ::close(fd); }
};

struct Case {
    const char* name;
    // Writes the inputs into `dir`; returns the fotrt arguments. `hold` keeps anything that
    // must live while fotrt runs (a held lock).
    std::function<std::vector<std::string>(const std::string& dir, std::shared_ptr<void>& hold)>
        setup;
    int exit_code;
    // exit 1: parts of the one error line; exit 3: parts of the one error record of
    // dir/out.jsonl.
    std::vector<std::string> expect;
    // Files under dir (relative) that must be byte-identical afterwards.
    std::vector<std::string> inputs;
    std::string env = "";  // VAR=value ... for the run
    int runs = 1;          // > 1: the same command again (a rerun must end the same way)
};

const std::vector<std::string> kModelFiles = {"m/config.json", "m/model.safetensors"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

const Case kCases[] = {
    // ---- 1. sizes from config.json: checked before any product or allocation -------------
    {"ConfigWindowNear2Pow59Inspect",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         model_with(d, [](Json& c) { c["max_position_embeddings"] = int64_t{1} << 59; });
         return {"inspect", "--model", d + "/m"};
     },
     1,
     {"m/config.json: max_position_embeddings=576460752303423488 is larger than fotrt supports"},
     kModelFiles},
    {"ConfigWindowNear2Pow59Logits",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         model_with(d, [](Json& c) { c["max_position_embeddings"] = (int64_t{1} << 59) + 3; });
         return {"logits", "--model", d + "/m", "--ids", ids_file(d), "--out", d + "/o.f32"};
     },
     1,
     {"max_position_embeddings=576460752303423491 is larger than fotrt supports"},
     with(kModelFiles, {"ids.json"})},
    {"TopKNear2Pow60Logits",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         model_with(d, [](Json&) {});
         return {"logits",     "--model",     d + "/m", "--ids", ids_file(d),          "--out",
                 d + "/o.f32", "--retrieval", "topk",   "--k",   "1152921504606846976"};
     },
     1,
     {"--k must be <= 1048576, got 1152921504606846976"},
     with(kModelFiles, {"ids.json"})},
    {"ConfigHugeVocabGenerate",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         model_with(d, [](Json& c) { c["vocab_size"] = int64_t{1} << 40; });
         return {"generate", "--model", d + "/m", "--ids", ids_file(d), "--max-new-tokens", "2"};
     },
     1,
     {"vocab_size=1099511627776 is larger than fotrt supports"},
     with(kModelFiles, {"ids.json"})},
    {"ConfigTrillionLayersInspect",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         model_with(d, [](Json& c) { c["num_hidden_layers"] = int64_t{1000000000000}; });
         return {"inspect", "--model", d + "/m"};
     },
     1,
     {"num_hidden_layers=1000000000000 is larger than fotrt supports"},
     kModelFiles},
    {"ConfigIntermediateInt64MaxInspect",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         model_with(d, [](Json& c) { c["intermediate_size"] = INT64_MAX; });
         return {"inspect", "--model", d + "/m", "--json"};
     },
     1,
     {"intermediate_size=9223372036854775807 is larger than fotrt supports"},
     kModelFiles},
    // In bounds but more than the machine: refused before the window's buffers are allocated
    // (and zeroed: the OOM killer would end the run without a word). FOT_HOST_MEMORY stands for
    // a small machine.
    {"ConfigWindowBeyondHostMemory",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         model_with(d, [](Json& c) { c["max_position_embeddings"] = int64_t{1} << 24; });
         return {"score",        "--model",  d + "/m",        "--input",
                 plain_jsonl(d), "--output", d + "/out.jsonl"};
     },
     1,
     {"m/config.json: max_position_embeddings=16777216 needs",
      "of FOT_HOST_MEMORY; lower max_position_embeddings"},
     with(kModelFiles, {"c.jsonl"}),
     "FOT_HOST_MEMORY=1G"},

    // ---- 3. ill-formed UTF-8 in a record: an error record, also on the rerun --------------
    {"JsonlInvalidUtf8Record",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         return {"batch",
                 "--model",
                 kCaseA,
                 "--input",
                 jsonl_with(d, "{\"id\": \"bad\", \"text\": \"caf\xe9 \xff\xfe\"}"),
                 "--output",
                 d + "/out.jsonl"};
     },
     3,
     {"\"index\":5", "line 6: not valid JSON", "\\\\xe9"},
     {"c.jsonl"},
     "",
     2},
    {"JsonlInvalidUtf8Score",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         return {"score",
                 "--model",
                 kCaseA,
                 "--input",
                 jsonl_with(d, "\xc3\x28{\"id\": 5, \"ids\": [1, 2]}"),
                 "--output",
                 d + "/out.jsonl"};
     },
     3,
     {"\"index\":5", "not valid JSON", "\\\\xc3"},
     {"c.jsonl"}},

    // ---- 4. token .bin offsets whose byte size wraps to the file size ---------------------
    {"TokenBinOffsetsWrapU32",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         return {"score",
                 "--model",
                 kCaseA,
                 "--input",
                 token_corpus(d, {0, 1, (uint64_t{1} << 62) + 2}),
                 "--output",
                 d + "/out.jsonl"};
     },
     1,
     {"t.bin has 8 bytes", "ends at 4611686018427387906 tokens"},
     {"t.bin", "t.offsets"}},
    {"TokenBinOffsetsWrapU16",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         return {"batch",
                 "--model",
                 kCaseA,
                 "--input",
                 token_corpus(d, {0, 2, (uint64_t{1} << 63) + 4}),
                 "--output",
                 d + "/out.jsonl",
                 "--token-dtype",
                 "u16"};
     },
     1,
     {"ends at 9223372036854775812 tokens"},
     {"t.bin", "t.offsets"}},

    // ---- 6. an output that is an input: refused before anything is opened for writing -----
    {"ScoreOutputIsInput",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         const std::string c = plain_jsonl(d);
         return {"score", "--model", kCaseA, "--input", c, "--output", c};
     },
     1,
     {"output ", "/c.jsonl is the input corpus ", "choose another --output"},
     {"c.jsonl"}},
    {"BatchRestartOntoInput",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         const std::string c = plain_jsonl(d);
         return {"batch", "--model", kCaseA, "--input", c, "--output", c, "--restart"};
     },
     1,
     {"/c.jsonl is the input corpus "},
     {"c.jsonl"}},
    {"BatchSummaryOntoInput",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         const std::string c = plain_jsonl(d);
         return {"batch",    "--model",        kCaseA,      "--input", c,
                 "--output", d + "/out.jsonl", "--summary", c};
     },
     1,
     {"summary ", "/c.jsonl is the input corpus ", "choose another --summary"},
     {"c.jsonl"}},
    {"OutputSymlinkToInput",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         const std::string c = plain_jsonl(d);
         fs::create_directories(d + "/sub");
         fs::create_symlink(c, d + "/sub/out.jsonl");
         return {"score", "--model", kCaseA, "--input", c, "--output", d + "/sub/out.jsonl"};
     },
     1,
     {"/sub/out.jsonl is the same file as the input corpus "},
     {"c.jsonl"}},
    {"OutputHardLinkToInput",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         const std::string c = plain_jsonl(d);
         fs::create_hard_link(c, d + "/out.jsonl");
         return {"batch", "--model",  kCaseA,           "--input",
                 c,       "--output", d + "/out.jsonl", "--restart"};
     },
     1,
     {"/out.jsonl is the same file as the input corpus "},
     {"c.jsonl"}},
    {"JournalOntoInput",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         const std::string c = plain_jsonl(d);
         fs::create_symlink(c, d + "/out.jsonl.journal");
         return {"batch", "--model", kCaseA, "--input", c, "--output", d + "/out.jsonl"};
     },
     1,
     {"output file ", "/out.jsonl.journal is the same file as the input corpus "},
     {"c.jsonl"}},
    {"OutputIsTheOffsetsFile",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         return {"score",    "--model",       kCaseA, "--input", token_corpus(d, {0, 2, 4}),
                 "--output", d + "/t.offsets"};
     },
     1,
     {"/t.offsets is the input corpus "},
     {"t.bin", "t.offsets"}},
    {"OutputIsAModelFile",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         const std::string m = model_with(d, [](Json&) {});
         return {"score",
                 "--model",
                 m,
                 "--input",
                 plain_jsonl(d),
                 "--output",
                 m + "/model.safetensors"};
     },
     1,
     {"/m/model.safetensors is a file of the model "},
     with(kModelFiles, {"c.jsonl"})},
    {"OutputTxtInTheInputDirectory",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         fs::create_directories(d + "/books");
         test::write_text(d + "/books/a.txt", "once upon a time");
         return {"score",
                 "--model",
                 kCaseA,
                 "--input",
                 d + "/books",
                 "--output",
                 d + "/books/scores.txt"};
     },
     1,
     {"/books/scores.txt is a .txt file in the input directory "},
     {"books/a.txt"}},

    // ---- 7. unbounded work or memory from a small input: refused, or computed in O(1) -------
    // (num_hidden_layers 1e12 is ConfigTrillionLayersInspect above; a 300k-tensor safetensors
    // header and the pickle memory budget are unit tests in tests/io/parsers_test.cpp.)
    {"MaxNewTokens9e18",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         return {"batch",
                 "--model",
                 kCaseA,
                 "--input",
                 one_doc(d),
                 "--output",
                 d + "/out.jsonl",
                 "--task",
                 "generate",
                 "--max-new-tokens",
                 "9000000000000000000",
                 "--mem-capacity",
                 "100"};
     },
     3,
     {"\"index\":0", "does not fit in memory: it needs ", "the capacity is 100 tokens"},
     {"c.jsonl"}},
    {"Threads100000",
     [](const std::string& d, auto&) -> std::
                                         vector<std::string> {
                                             return {"generate",  "--model",   kCaseA,  "--ids",
                                                     ids_file(d), "--threads", "100000"};
                                         },
     1,
     {"--threads must be in [0, 1024], got 100000"},
     {"ids.json"}},
    // One runaway line (a missing newline in a generated file): an error record, never a
    // parse of megabytes. Just over the default limit, and over a small FOT_MAX_RECORD_BYTES.
    {
        "JsonlLineOverTheDefaultLimit",
        [](const std::string& d, auto&) -> std::vector<std::string> {
            std::string big = "{\"id\": \"big\", \"text\": \"";
            big.append(size_t{64} << 20, 'a');
            big += "\"}";
            return {"score",    "--model",       kCaseA, "--input", jsonl_with(d, big),
                    "--output", d + "/out.jsonl"};
        },
        3,
        {"\"index\":5", "line 6: the line is 67108889 bytes, over the limit of 67108864 bytes",
         "FOT_MAX_RECORD_BYTES"},
        {"c.jsonl"}},
    {"JsonlLineOverASetLimit",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       const std::string big =
                           "{\"id\": \"big\", \"text\": \"" + std::string(5000, 'a') + "\"}";
                       return {"batch",    "--model",       kCaseA, "--input", jsonl_with(d, big),
                               "--output", d + "/out.jsonl"};
                   },
     3,
     {"\"index\":5", "the line is 5025 bytes, over the limit of 2048 bytes for one record"},
     {"c.jsonl"},
     "FOT_MAX_RECORD_BYTES=2K"},
    {"MaxRecordBytesMalformed",
     [](const std::string& d, auto&) -> std::
                                         vector<std::string> {
                                             return {"score",         "--model",      kCaseA,
                                                     "--input",       plain_jsonl(d), "--output",
                                                     d + "/out.jsonl"};
                                         },
     1,
     {"FOT_MAX_RECORD_BYTES='lots' is not a size"},
     {"c.jsonl"},
     "FOT_MAX_RECORD_BYTES=lots"},

    // ---- 8. JSON followed by a NUL and junk; duplicate keys; YAML; messages ----------------
    {"ConfigNulAndJunk",
     [](const std::string& d, auto&) -> std::
                                         vector<std::string> {
                                             const std::string m = model_with_config_text(
                                                 d, case_a_config_text() + std::string(1, '\0') +
                                                        "junk");
                                             return {"inspect", "--model", m};
                                         },
     1,
     {"m/config.json: invalid JSON: NUL byte at offset "},
     kModelFiles},
    {"ConfigDuplicateKey",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       std::string text = case_a_config_text();
                       text.insert(text.find('{') + 1, "\"hidden_size\": 4096,");
                       return {"inspect", "--model", model_with_config_text(d, text)};
                   },
     1,
     {"m/config.json: invalid JSON: duplicate key 'hidden_size'"},
     kModelFiles},
    {"ConfigHugeValueNotNegative",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       std::string text = case_a_config_text();
                       text.insert(text.find('{') + 1, "\"mem_layers\": [18446744073709551615],");
                       Json c = Json::parse(case_a_config_text());
                       if (c.contains("mem_layers")) {
                           c["mem_layers"] = Json::parse("[18446744073709551615]");
                           text = c.dump(2);
                       }
                       return {"inspect", "--model", model_with_config_text(d, text)};
                   },
     1,
     {"m/config.json: mem_layers[0]=18446744073709551615 is too large"},
     kModelFiles},
    {"SafetensorsHeaderNulAndJunk",
     [](const std::string& d, auto&) -> std::
                                         vector<std::string> {
                                             return {"inspect", "--model",
                                                     model_with_header_tail(
                                                         d, std::string(1, '\0') + "junk   ")};
                                         },
     1,
     {"m/model.safetensors: header: invalid JSON: NUL byte at offset "},
     kModelFiles},
    {"IndexNulAndJunk",
     [](const std::string& d, auto&) -> std::
                                         vector<std::string> {
                                             const std::string m = model_with(d, [](Json&) {});
                                             test::write_text(m + "/model.safetensors.index.json",
                                                              std::string("{\"weight_map\": {}}") +
                                                                  '\0' + "junk");
                                             return {"inspect", "--model", m};
                                         },
     1,
     {"m/model.safetensors.index.json: invalid JSON: NUL byte at offset 18"},
     with(kModelFiles, {"m/model.safetensors.index.json"})},
    {"IdsNulAndJunk",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       test::write_text(d + "/ids.json",
                                        std::string("[1, 17, 42]") + '\0' + "junk");
                       return {"generate", "--model", kCaseA, "--ids", d + "/ids.json"};
                   },
     1,
     {"/ids.json: not valid JSON (expected a flat list of token ids): NUL byte at offset 11"},
     {"ids.json"}},
    {"IdsHugeValueNotNegative",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       test::write_text(d + "/ids.json", "[1, 18446744073709551615]");
                       return {"logits",        "--model", kCaseA,      "--ids",
                               d + "/ids.json", "--out",   d + "/o.f32"};
                   },
     1,
     {"/ids.json: token id 18446744073709551615 at index 1 is negative or too large"},
     {"ids.json"}},
    {"JsonlNulAndJunk",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       return {"score",
                               "--model",
                               kCaseA,
                               "--input",
                               jsonl_with(d, std::string("{\"id\": \"x\", \"ids\": [1, 2]}") +
                                                 '\0' + "junk"),
                               "--output",
                               d + "/out.jsonl"};
                   },
     3,
     {"\"index\":5", "line 6: not valid JSON: NUL byte at offset 26"},
     {"c.jsonl"}},
    {"JsonlDuplicateKey",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       return {"batch",
                               "--model",
                               kCaseA,
                               "--input",
                               jsonl_with(d, "{\"id\": \"x\", \"ids\": [1, 2], \"ids\": [3]}"),
                               "--output",
                               d + "/out.jsonl"};
                   },
     3,
     {"\"index\":5", "line 6: not valid JSON: duplicate key 'ids'"},
     {"c.jsonl"}},
    {"RunYamlSecondDocument",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       test::write_text(d + "/run.yaml",
                                        "model: " + kCaseA + "\n---\nthreads: 1\n");
                       return {"generate", "--config", d + "/run.yaml", "--ids", ids_file(d)};
                   },
     1,
     {"/run.yaml:3: a second YAML document (after '---') is not allowed"},
     {"run.yaml", "ids.json"}},
    {"JobYamlSecondDocument",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       test::write_text(d + "/job.yaml",
                                        "model: " + kCaseA + "\ninput: " + plain_jsonl(d) +
                                            "\noutput: " + d + "/out.jsonl\n---\nrestart: true\n");
                       return {"batch", "--config", d + "/job.yaml"};
                   },
     1,
     {"/job.yaml:5: a second YAML document (after '---') is not allowed"},
     {"job.yaml", "c.jsonl"}},
    {"JobYamlFlowMappingJobKeyIsAList",
     [](const std::string& d, auto&) -> std::vector<std::string> {
         test::write_text(d + "/job.yaml", "{model: " + kCaseA + ", input: [" + plain_jsonl(d) +
                                               "], output: " + d + "/out.jsonl}\n");
         return {"batch", "--config", d + "/job.yaml"};
     },
     1,
     {"/job.yaml:1: input must be a plain value (e.g. 'input: value'), got a list"},
     {"job.yaml", "c.jsonl"}},
    {"SummaryDirectoryMissing",
     [](const std::string& d,
        auto&) -> std::
                   vector<std::string> {
                       return {"batch",          "--model",      kCaseA,
                               "--input",        plain_jsonl(d), "--output",
                               d + "/out.jsonl", "--summary",    d + "/nowhere/s.json"};
                   },
     1,
     {"summary ", "/nowhere/s.json: directory ",
      " does not exist; create it or choose another --summary"},
     {"c.jsonl"}},

    // ---- 2. an output another job holds: refused, naming the holder ------------------------
    {"OutputLockedByAnotherJob",
     [](const std::string& d, std::shared_ptr<void>& hold) -> std::vector<std::string> {
         test::write_text(d + "/out.jsonl", "{\"id\": \"theirs\"}\n");
         hold = std::make_shared<HeldLock>(d + "/out.jsonl.lock");
         return {"batch",        "--model",  kCaseA,           "--input",
                 plain_jsonl(d), "--output", d + "/out.jsonl", "--restart"};
     },
     1,
     {"/out.jsonl is in use by another job (pid 4242 on host elsewhere, started yesterday;"},
     {"c.jsonl", "out.jsonl"}},
};

// Lines of stderr other than info-level progress (e.g. the "loaded weights" line a run prints
// before it meets a bad output path): an error must still be exactly one of them.
size_t count_lines(const std::string& s) {
    size_t n = 0;
    for (size_t pos = 0; pos < s.size();) {
        size_t nl = s.find('\n', pos);
        if (nl == std::string::npos) break;
        if (s.substr(pos, nl - pos).find(" info: ") == std::string::npos) ++n;
        pos = nl + 1;
    }
    return n;
}

void run_case(const Case& c) {
    TempDir tmp;
    const std::string dir = tmp / "case";
    fs::create_directories(dir);
    std::shared_ptr<void> hold;
    const std::vector<std::string> args = c.setup(dir, hold);
    std::map<std::string, Bytes> before;
    for (const std::string& f : c.inputs) before[f] = test::read_bytes(dir + "/" + f);

    std::string cmd = c.env + " " + test::shell_quote(FOTRT_EXE);
    for (const std::string& a : args) cmd += " " + test::shell_quote(a);
    if (args.at(0) != "inspect" && std::find(args.begin(), args.end(), "--threads") == args.end()) {
        cmd += " --threads 1";
    }
    cmd += " >" + test::shell_quote(tmp / "out.txt") + " 2>" + test::shell_quote(tmp / "err.txt");
    for (int run = 0; run < c.runs; ++run) {
        SCOPED_TRACE(::testing::Message() << "run " << run + 1 << ": " << cmd);
        const int status = std::system(cmd.c_str());
        ASSERT_TRUE(WIFEXITED(status));
        const int code = WEXITSTATUS(status);  // sh reports a signal as 128 + its number
        const Bytes e = test::read_bytes(tmp / "err.txt");
        const std::string err(e.begin(), e.end());
        EXPECT_EQ(code, c.exit_code) << err;
        if (c.exit_code == 1) {
            EXPECT_EQ(count_lines(err), 1u) << err;
            EXPECT_NE(err.find(" error: "), std::string::npos) << err;
            for (const std::string& p : c.expect) {
                EXPECT_NE(err.find(p), std::string::npos) << "missing '" << p << "' in " << err;
            }
        } else {
            EXPECT_EQ(err.find("error:"), std::string::npos) << err;
            // Exactly one error record; every line of the output is JSON.
            const Bytes o = test::read_bytes(dir + "/out.jsonl");
            const std::string out(o.begin(), o.end());
            size_t errors = 0;
            std::string record;
            for (size_t pos = 0; pos < out.size();) {
                const size_t nl = out.find('\n', pos);
                ASSERT_NE(nl, std::string::npos) << "unterminated last line: " << out;
                const std::string line = out.substr(pos, nl - pos);
                const Json j = Json::parse(line);  // throws (fails the test) on a bad line
                if (j.contains("error")) {
                    ++errors;
                    record = line;
                }
                pos = nl + 1;
            }
            EXPECT_EQ(errors, 1u) << out;
            for (const std::string& p : c.expect) {
                EXPECT_NE(record.find(p), std::string::npos)
                    << "missing '" << p << "' in " << record;
            }
        }
    }
    for (const auto& [f, bytes] : before) {
        EXPECT_TRUE(fs::exists(dir + "/" + f)) << f << " was removed";
        EXPECT_TRUE(test::read_bytes(dir + "/" + f) == bytes) << f << " was changed";
    }
}

// One test per case, Hostile.<name> (a value-parameterized test would carry an unprintable
// parameter into every ctest name).
class HostileCase : public ::testing::Test {
  public:
    explicit HostileCase(const Case* c) : c_(c) {}
    void TestBody() override { run_case(*c_); }

  private:
    const Case* c_;
};

const bool kRegistered = [] {
    for (const Case& c : kCases) {
        ::testing::RegisterTest("Hostile", c.name, nullptr, nullptr, __FILE__, __LINE__,
                                [&c]() -> ::testing::Test* { return new HostileCase(&c); });
    }
    return true;
}();

}  // namespace
}  // namespace fot
