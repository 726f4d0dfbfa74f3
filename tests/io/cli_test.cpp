// End-to-end tests of `fotrt convert` and `fotrt inspect` (the real binary, FOTRT_EXE):
// conversions of the golden fixtures reload bit-identical, and every kind of damaged
// checkpoint makes `fotrt inspect` fail with exactly one stderr line that names the file
// and the problem.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "runtime/io/checkpoint.h"
#include "tests/io/io_test_util.h"

namespace fot {
namespace {

using test::Bytes;
using test::RunResult;
using test::TempDir;
namespace fs = std::filesystem;

// Same names, dtypes, shapes and bytes.
void expect_same_tensors(const std::string& dir_a, const std::string& dir_b) {
    auto a = Checkpoint::open(dir_a);
    auto b = Checkpoint::open(dir_b);
    ASSERT_EQ(a->tensors().size(), b->tensors().size()) << dir_a << " vs " << dir_b;
    for (size_t i = 0; i < a->tensors().size(); ++i) {
        const TensorRecord& x = a->tensors()[i];
        const TensorRecord& y = b->tensors()[i];
        ASSERT_EQ(x.name, y.name);
        EXPECT_EQ(x.dtype, y.dtype) << x.name;
        EXPECT_EQ(x.shape, y.shape) << x.name;
        ASSERT_EQ(x.nbytes, y.nbytes) << x.name;
        EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0) << x.name;
    }
}

size_t count_lines(const std::string& s) {
    return std::count(s.begin(), s.end(), '\n');
}

// `fotrt <args>` fails with exactly one line on stderr containing every one of `parts`.
void expect_one_line_failure(const std::vector<std::string>& args,
                             std::initializer_list<std::string> parts) {
    TempDir io;
    RunResult r = test::run_fotrt(args, io);
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_TRUE(r.err.ends_with("\n")) << r.err;
    for (const std::string& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << r.err;
}

void expect_inspect_fails(const std::string& dir, std::initializer_list<std::string> parts) {
    expect_one_line_failure({"inspect", "--model", dir}, parts);
}

// ---- convert ------------------------------------------------------------------------------

struct ConvertCase {
    const char* fixture;
    std::string reference;  // the directory whose tensors the output must equal
};

TEST(Convert, BinFixturesMatchSafetensorsAndReshard) {
    const ConvertCase cases[] = {
        {"pytorch_fp32", test::case_a_dir()},
        {"pytorch_bf16_sharded", test::fixture_dir("safetensors_bf16_sharded")},
    };
    for (const ConvertCase& c : cases) {
        SCOPED_TRACE(c.fixture);
        TempDir tmp;
        const std::string src = test::fixture_dir(c.fixture);
        const std::string out = tmp / "out";
        RunResult r = test::run_fotrt({"convert", "--from", src, "--to", out}, tmp);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_NE(r.err.find("tensors written"), std::string::npos) << r.err;
        EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
        EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
        EXPECT_EQ(test::read_bytes(out + "/config.json"), test::read_bytes(src + "/config.json"));
        expect_same_tensors(out, c.reference);

        const std::string sharded = tmp / "sharded";
        r = test::run_fotrt(
            {"convert", "--from", src, "--to", sharded, "--max-shard-size", "100KB"}, tmp);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_TRUE(fs::exists(sharded + "/model.safetensors.index.json"));
        EXPECT_FALSE(fs::exists(sharded + "/model.safetensors"));
        size_t shards = 0;
        for (const auto& e : fs::directory_iterator(sharded)) {
            shards += e.path().filename().string().starts_with("model-0000");
        }
        EXPECT_GE(shards, 3u);
        expect_same_tensors(sharded, c.reference);
        expect_same_tensors(sharded, out);

        r = test::run_fotrt({"inspect", "--model", sharded}, tmp);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_NE(r.out.find("safetensors, "), std::string::npos) << r.out;
    }
}

TEST(Convert, DtypeConversionEqualsBf16Fixture) {
    TempDir tmp;
    const std::string out = tmp / "bf16";
    RunResult r = test::run_fotrt(
        {"convert", "--from", test::fixture_dir("pytorch_fp32"), "--to", out, "--dtype", "bf16"},
        tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_same_tensors(out, test::fixture_dir("safetensors_bf16_sharded"));
    Bytes cfg = test::read_bytes(out + "/config.json");
    auto j = nlohmann::json::parse(std::string(cfg.begin(), cfg.end()));
    EXPECT_EQ(j["torch_dtype"], "bfloat16");
    EXPECT_EQ(j["hidden_size"], 64);
    EXPECT_TRUE(j.contains("auto_map"));  // unknown keys survive
}

TEST(Convert, RefusesToOverwriteUnlessForced) {
    TempDir tmp;
    const std::string src = tmp / "src";
    test::copy_dir(test::fixture_dir("safetensors_bf16_sharded"), src);
    test::write_text(src + "/tokenizer.model", "not really a tokenizer");
    const std::string out = tmp / "out";
    RunResult r =
        test::run_fotrt({"convert", "--from", src, "--to", out, "--max-shard-size", "1"}, tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(test::read_bytes(out + "/tokenizer.model"),
              test::read_bytes(src + "/tokenizer.model"));
    ASSERT_TRUE(fs::exists(out + "/model.safetensors.index.json"));

    expect_one_line_failure({"convert", "--from", src, "--to", out},
                            {out, "already holds weight files", "--force"});
    r = test::run_fotrt({"convert", "--from", src, "--to", out, "--force"}, tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // The stale shards and index are gone: one file now.
    EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(out + "/model-00001-of-00039.safetensors"));
    EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
    expect_same_tensors(out, src);
}

TEST(Convert, ValidatesBeforeWritingAndChecksOptions) {
    TempDir tmp;
    const std::string bad = tmp / "bad";
    test::copy_dir(test::fixture_dir("pytorch_fp32"), bad);
    fs::resize_file(bad + "/pytorch_model.bin", 1000);
    const std::string out = tmp / "out";
    expect_one_line_failure({"convert", "--from", bad, "--to", out}, {"pytorch_model.bin"});
    EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
    EXPECT_FALSE(fs::exists(out + "/config.json"));

    const std::string good = test::fixture_dir("pytorch_fp32");
    expect_one_line_failure({"convert", "--from", good, "--to", out, "--dtype", "i32"},
                            {"--dtype"});
    expect_one_line_failure({"convert", "--from", good, "--to", out, "--max-shard-size", "5XB"},
                            {"--max-shard-size"});
    expect_one_line_failure({"convert", "--from", good}, {"--to"});
    const std::string same = tmp / "same";
    test::copy_dir(good, same);
    expect_one_line_failure({"convert", "--from", same, "--to", same + "/."}, {"source directory"});
}

// ---- inspect ------------------------------------------------------------------------------

TEST(Inspect, PrintsSummaryAndJson) {
    TempDir tmp;
    RunResult r =
        test::run_fotrt({"inspect", "--model", test::fixture_dir("pytorch_bf16_sharded")}, tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* s : {"pytorch .bin, 2 shards", "39 tensors", "bf16", "234048", "[1, 3]",
                          "4 x 16", "1024 bytes"}) {
        EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
    }
    r = test::run_fotrt({"inspect", "--model", test::case_a_dir(), "--json", "--mem-dtype", "bf16"},
                        tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["parameters"], 234048);
    EXPECT_EQ(j["checkpoint"]["tensors"], 39);
    EXPECT_EQ(j["checkpoint"]["format"], "safetensors, 1 file");
    EXPECT_EQ(j["mem_dtype"], "bf16");
    EXPECT_EQ(j["config"]["mem_dtype"], "f32");
    // 2 memory layers x (K + V) x hidden 64 x 2 bytes.
    EXPECT_EQ(j["memory_bytes_per_token"], 512);
    EXPECT_EQ(j["memory_tokens_fit"]["8GiB"], (int64_t{8} << 30) / 512);
    EXPECT_EQ(j["memory_tokens_fit"]["80GiB"], (int64_t{80} << 30) / 512);

    expect_one_line_failure({"inspect", "--model", test::case_a_dir(), "--mem-dtype", "i8"},
                            {"--mem-dtype"});
    expect_one_line_failure({"inspect"}, {"--model"});
}

// ---- damaged checkpoints ------------------------------------------------------------------

// A writable copy of a golden directory.
struct Damaged {
    TempDir tmp;
    std::string dir;
    explicit Damaged(const std::string& src) : dir(tmp / "model") { test::copy_dir(src, dir); }
    std::string file(const std::string& name) const { return dir + "/" + name; }
};

std::string case_a_model(const Damaged& d) {
    return d.file("model.safetensors");
}

TEST(Corruption, TruncatedSafetensors) {
    Damaged d(test::case_a_dir());
    fs::resize_file(case_a_model(d), 500000);
    expect_inspect_fails(d.dir, {"model.safetensors", "out of range", "truncated"});
    fs::resize_file(case_a_model(d), 5);
    expect_inspect_fails(d.dir, {"model.safetensors", "too short"});
}

TEST(Corruption, CorruptHeaderJson) {
    Damaged d(test::case_a_dir());
    Bytes b = test::read_bytes(case_a_model(d));
    const size_t pos = test::find_bytes(b, "\"dtype\"");
    ASSERT_NE(pos, std::string::npos);
    b[pos + 7] = ';';  // the ':' after "dtype"
    test::write_bytes(case_a_model(d), b);
    expect_inspect_fails(d.dir, {"model.safetensors", "invalid JSON"});
}

TEST(Corruption, HeaderLengthLargerThanFile) {
    Damaged d(test::case_a_dir());
    Bytes b = test::read_bytes(case_a_model(d));
    b[5] = 0x01;  // + 2^40
    test::write_bytes(case_a_model(d), b);
    expect_inspect_fails(d.dir, {"model.safetensors", "header length", "larger than the file"});
}

TEST(Corruption, DataOffsetsOutOfRange) {
    Damaged d(test::case_a_dir());
    test::rewrite_safetensors_header(case_a_model(d), [](nlohmann::ordered_json& h) {
        auto& t = h["model.norm.weight"]["data_offsets"];
        t = {t[0].get<uint64_t>() + 10000000, t[1].get<uint64_t>() + 10000000};
    });
    expect_inspect_fails(d.dir, {"model.safetensors", "model.norm.weight", "out of range"});
}

TEST(Corruption, OverlappingTensors) {
    Damaged d(test::case_a_dir());
    test::rewrite_safetensors_header(case_a_model(d), [](nlohmann::ordered_json& h) {
        h["model.layers.0.self_attn.k_proj.weight"]["data_offsets"] =
            h["model.layers.0.self_attn.q_proj.weight"]["data_offsets"];
    });
    expect_inspect_fails(d.dir, {"model.safetensors", "k_proj", "q_proj", "overlap"});
}

TEST(Corruption, WrongDtype) {
    Damaged d(test::case_a_dir());
    test::rewrite_safetensors_header(case_a_model(d), [](nlohmann::ordered_json& h) {
        h["model.layers.1.mlp.up_proj.weight"]["dtype"] = "I32";
    });
    expect_inspect_fails(d.dir,
                         {"model.safetensors", "model.layers.1.mlp.up_proj.weight", "dtype i32"});
}

TEST(Corruption, WrongShape) {
    Damaged d(test::case_a_dir());
    test::rewrite_safetensors_header(case_a_model(d), [](nlohmann::ordered_json& h) {
        h["model.layers.2.self_attn.v_proj.weight"]["shape"] = {32, 128};
    });
    expect_inspect_fails(d.dir, {"model.safetensors", "model.layers.2.self_attn.v_proj.weight",
                                 "[32, 128]", "expected [64, 64]"});
}

TEST(Corruption, MissingTensor) {
    Damaged d(test::case_a_dir());
    test::rewrite_safetensors_header(case_a_model(d), [](nlohmann::ordered_json& h) {
        h.erase("model.layers.3.post_attention_layernorm.weight");
    });
    expect_inspect_fails(
        d.dir, {d.dir, "missing tensor", "model.layers.3.post_attention_layernorm.weight"});
}

TEST(Corruption, ExtraTensor) {
    Damaged d(test::case_a_dir());
    const size_t data_size = 936192;
    test::rewrite_safetensors_header(
        case_a_model(d),
        [&](nlohmann::ordered_json& h) {
            h["model.layers.0.self_attn.rotary_emb.cos_cached"] = {
                {"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {data_size, data_size + 8}}};
        },
        Bytes(8, 0));
    expect_inspect_fails(d.dir, {"model.safetensors", "unexpected tensor", "cos_cached"});
}

TEST(Corruption, MissingShardListedInIndex) {
    Damaged d(test::fixture_dir("safetensors_bf16_sharded"));
    fs::remove(d.file("model-00002-of-00002.safetensors"));
    expect_inspect_fails(d.dir, {"model.safetensors.index.json", "model-00002-of-00002.safetensors",
                                 "does not exist"});
    Damaged p(test::fixture_dir("pytorch_bf16_sharded"));
    fs::remove(p.file("pytorch_model-00001-of-00002.bin"));
    expect_inspect_fails(p.dir, {"pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin",
                                 "does not exist"});
}

TEST(Corruption, NonZipBin) {
    Damaged d(test::fixture_dir("pytorch_fp32"));
    test::write_text(d.file("pytorch_model.bin"), std::string(4096, 'z'));
    expect_inspect_fails(d.dir, {"pytorch_model.bin", "not a zip archive"});
}

TEST(Corruption, TruncatedBin) {
    Damaged d(test::fixture_dir("pytorch_fp32"));
    fs::resize_file(d.file("pytorch_model.bin"), 600000);
    expect_inspect_fails(d.dir, {"pytorch_model.bin", "truncated"});
}

// Patches data.pkl in place (same length). The zip's CRC-32 is left stale on purpose: the
// reader does not verify CRCs (see runtime/io/zip_reader.h), so the pickle check is what
// must catch the damage.
void patch_bin(const std::string& path, const std::string& from, const std::string& to) {
    ASSERT_EQ(from.size(), to.size());
    Bytes b = test::read_bytes(path);
    const size_t pos = test::find_bytes(b, from);
    ASSERT_NE(pos, std::string::npos) << from;
    std::copy(to.begin(), to.end(), b.begin() + static_cast<ptrdiff_t>(pos));
    test::write_bytes(path, b);
}

TEST(Corruption, PickleWithUnexpectedOpcode) {
    Damaged d(test::fixture_dir("pytorch_fp32"));
    // PROTO 2, GLOBAL collections.OrderedDict, BINPUT 0 -> INST 0 (not in the subset).
    patch_bin(d.file("pytorch_model.bin"), std::string("OrderedDict\nq\x00", 14),
              std::string("OrderedDict\ni\x00", 14));
    expect_inspect_fails(d.dir, {"pytorch_model.bin", "data.pkl", "opcode INST", "byte 27"});
}

TEST(Corruption, PickleWithUnexpectedGlobal) {
    Damaged d(test::fixture_dir("pytorch_fp32"));
    patch_bin(d.file("pytorch_model.bin"), "_rebuild_tensor_v2", "_rebuild_parameter");
    expect_inspect_fails(
        d.dir, {"pytorch_model.bin", "data.pkl", "torch._utils._rebuild_parameter", "not allowed"});
    Damaged s(test::fixture_dir("pytorch_fp32"));
    patch_bin(s.file("pytorch_model.bin"), "torch\nFloatStorage", "torch\nShortStorage");
    expect_inspect_fails(s.dir, {"pytorch_model.bin", "torch.ShortStorage", "not supported"});
}

TEST(Corruption, EmptyDirectoryAndNoWeights) {
    TempDir tmp;
    const std::string empty = tmp / "empty";
    fs::create_directories(empty);
    expect_inspect_fails(empty, {"config.json"});
    test::write_bytes(empty + "/config.json",
                      test::read_bytes(test::case_a_dir() + "/config.json"));
    expect_inspect_fails(empty, {empty, "no weights found"});
    expect_inspect_fails(tmp / "does_not_exist", {"does_not_exist"});
}

}  // namespace
}  // namespace fot
