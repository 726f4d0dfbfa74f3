// Checkpoint-level tests: the golden fixtures load bit-identical to case_a's weights,
// directory layouts and index files, LongLLaMA validation, slicing with conversion, and the
// safetensors writer (single file, shards + index, dtype conversion).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "config/model_config.h"
#include "runtime/core/status.h"
#include "runtime/io/checkpoint.h"
#include "runtime/io/convert.h"
#include "runtime/io/mapped_file.h"
#include "runtime/io/pytorch_bin.h"
#include "runtime/io/safetensors_writer.h"
#include "tests/io/io_test_util.h"

namespace fot {
namespace {

using test::TempDir;

template <typename Fn>
std::string expect_error(Fn fn, std::initializer_list<std::string> parts) {
    try {
        fn();
    } catch (const Error& e) {
        std::string msg = e.what();
        for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        return msg;
    }
    ADD_FAILURE() << "no fot::Error thrown";
    return "";
}

ModelConfig case_a_config() {
    return load_model_config(test::case_a_dir() + "/config.json").value();
}

std::vector<float> to_f32(const TensorRecord& t) {
    std::vector<float> v(static_cast<size_t>(shape_numel(t.shape)));
    const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1;
    copy_tensor_slice(t, 0, rows, 0, t.shape.back(), v.data(), DType::kF32);
    return v;
}

// Raw 16-bit values of a bf16 tensor (memcpy: the data may be unaligned).
std::vector<uint16_t> raw_u16(const TensorRecord& t) {
    std::vector<uint16_t> v(t.nbytes / 2);
    std::memcpy(v.data(), t.data, t.nbytes);
    return v;
}

class Fixtures : public ::testing::Test {
  protected:
    void SetUp() override { ref_ = Checkpoint::open(test::case_a_dir()); }
    // Every tensor of `fixture` equals case_a's f32 weights, exactly (f32) or rounded to
    // bf16 (round to nearest even, bit for bit).
    void expect_matches_reference(const Checkpoint& c) {
        ASSERT_EQ(c.tensors().size(), ref_->tensors().size());
        for (size_t i = 0; i < ref_->tensors().size(); ++i) {
            const TensorRecord& r = ref_->tensors()[i];
            const TensorRecord& t = c.tensors()[i];
            ASSERT_EQ(t.name, r.name);
            ASSERT_EQ(t.shape, r.shape) << t.name;
            ASSERT_EQ(r.dtype, DType::kF32);
            if (t.dtype == DType::kF32) {
                ASSERT_EQ(t.nbytes, r.nbytes);
                EXPECT_EQ(std::memcmp(t.data, r.data, r.nbytes), 0) << t.name;
            } else {
                ASSERT_EQ(t.dtype, DType::kBF16) << t.name;
                const std::vector<float> ref = to_f32(r);
                const std::vector<uint16_t> got = raw_u16(t);
                ASSERT_EQ(got.size(), ref.size());
                size_t bad = 0;
                for (size_t k = 0; k < ref.size(); ++k) bad += got[k] != f32_to_bf16(ref[k]);
                EXPECT_EQ(bad, 0u) << t.name;
            }
        }
    }
    std::unique_ptr<Checkpoint> ref_;
};

TEST_F(Fixtures, ReferenceIsAValidF32Checkpoint) {
    validate_llama_checkpoint(*ref_, case_a_config());
    EXPECT_EQ(ref_->describe(), "safetensors, 1 file");
    for (const TensorRecord& t : ref_->tensors()) EXPECT_EQ(t.dtype, DType::kF32);
}

TEST_F(Fixtures, PytorchFp32MatchesExactly) {
    auto c = Checkpoint::open(test::fixture_dir("pytorch_fp32"));
    EXPECT_EQ(c->describe(), "pytorch .bin, 1 file");
    validate_llama_checkpoint(*c, case_a_config());
    for (const TensorRecord& t : c->tensors()) EXPECT_EQ(t.dtype, DType::kF32) << t.name;
    expect_matches_reference(*c);
}

TEST_F(Fixtures, PytorchBf16ShardedMatchesRoundedAndSkipsInvFreq) {
    const std::string dir = test::fixture_dir("pytorch_bf16_sharded");
    auto c = Checkpoint::open(dir);
    EXPECT_EQ(c->describe(), "pytorch .bin, 2 shards");
    validate_llama_checkpoint(*c, case_a_config());
    expect_matches_reference(*c);
    EXPECT_EQ(c->find("model.layers.0.self_attn.rotary_emb.inv_freq"), nullptr);
    // The raw shard does hold inv_freq (f32, 1 / 10000^(2i/16)): the skip is deliberate.
    MappedFile m = MappedFile::open(dir + "/pytorch_model-00001-of-00002.bin");
    const auto raw = parse_pytorch_bin(m.data(), m.size(), m.path());
    const TensorRecord* inv = nullptr;
    for (const TensorRecord& t : raw) {
        if (t.name == "model.layers.0.self_attn.rotary_emb.inv_freq") inv = &t;
    }
    ASSERT_NE(inv, nullptr);
    ASSERT_EQ(inv->dtype, DType::kF32);
    ASSERT_EQ(inv->shape, Shape({8}));
    const std::vector<float> v = to_f32(*inv);
    for (int i = 0; i < 8; ++i) {
        EXPECT_NEAR(v[static_cast<size_t>(i)], 1.0 / std::pow(10000.0, 2.0 * i / 16), 1e-6);
    }
}

TEST_F(Fixtures, SafetensorsBf16ShardedMatchesRoundedAndBinBitwise) {
    auto st = Checkpoint::open(test::fixture_dir("safetensors_bf16_sharded"));
    EXPECT_EQ(st->describe(), "safetensors, 2 shards");
    validate_llama_checkpoint(*st, case_a_config());
    expect_matches_reference(*st);
    auto bin = Checkpoint::open(test::fixture_dir("pytorch_bf16_sharded"));
    ASSERT_EQ(bin->tensors().size(), st->tensors().size());
    for (size_t i = 0; i < st->tensors().size(); ++i) {
        const TensorRecord& a = st->tensors()[i];
        const TensorRecord& b = bin->tensors()[i];
        ASSERT_EQ(a.name, b.name);
        ASSERT_EQ(a.nbytes, b.nbytes);
        EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << a.name;
        EXPECT_NE(a.file, b.file);
    }
}

TEST_F(Fixtures, RecordsNameTheirShard) {
    auto c = Checkpoint::open(test::fixture_dir("safetensors_bf16_sharded"));
    const TensorRecord* first = c->find("model.layers.2.self_attn.q_proj.weight");
    const TensorRecord* second = c->find("model.layers.2.self_attn.k_proj.weight");
    ASSERT_NE(first, nullptr);
    ASSERT_NE(second, nullptr);
    EXPECT_TRUE(first->file.ends_with("model-00001-of-00002.safetensors")) << first->file;
    EXPECT_TRUE(second->file.ends_with("model-00002-of-00002.safetensors")) << second->file;
    EXPECT_EQ(c->find("no.such.tensor"), nullptr);
}

TEST(ExpectedTensors, ListsEveryLlamaWeight) {
    ModelConfig c = case_a_config();
    auto e = expected_llama_tensors(c);
    ASSERT_EQ(e.size(), 2u + 9u * 4u + 1u);
    std::map<std::string, Shape> m;
    for (const auto& t : e) m[t.name] = t.shape;
    EXPECT_EQ(m.size(), e.size());
    EXPECT_EQ(m["model.embed_tokens.weight"], Shape({256, 64}));
    EXPECT_EQ(m["lm_head.weight"], Shape({256, 64}));
    EXPECT_EQ(m["model.layers.3.mlp.gate_proj.weight"], Shape({176, 64}));
    EXPECT_EQ(m["model.layers.3.mlp.down_proj.weight"], Shape({64, 176}));
    EXPECT_EQ(m["model.layers.0.self_attn.o_proj.weight"], Shape({64, 64}));
    EXPECT_EQ(m["model.layers.1.post_attention_layernorm.weight"], Shape({64}));
    EXPECT_EQ(m["model.norm.weight"], Shape({64}));
    c.tie_word_embeddings = true;
    EXPECT_EQ(expected_llama_tensors(c).size(), e.size() - 1);
}

// A copy of case_a's tensors (owning their bytes), for building broken checkpoints.
struct OwnedTensors {
    std::vector<TensorRecord> records;
    std::vector<std::vector<uint8_t>> storage;
    explicit OwnedTensors(const Checkpoint& c) {
        for (const TensorRecord& t : c.tensors()) add(t);
    }
    void add(TensorRecord t) {
        const auto* p = static_cast<const uint8_t*>(t.data);
        storage.emplace_back(p, p + t.nbytes);
        records.push_back(std::move(t));
    }
    void finalize() {
        for (size_t i = 0; i < records.size(); ++i) records[i].data = storage[i].data();
    }
};

TEST(Validate, NamesMissingExtraMisshapedAndMistypedTensors) {
    const ModelConfig c = case_a_config();
    auto ref = Checkpoint::open(test::case_a_dir());
    auto build = [&](auto mutate) {
        OwnedTensors o(*ref);
        mutate(o);
        o.finalize();
        auto dir = std::make_unique<TempDir>();
        write_safetensors(dir->path(), o.records, size_t{1} << 30);
        return dir;
    };
    {
        auto d = build([](OwnedTensors& o) {
            o.records.erase(o.records.begin() + 3);
            o.storage.erase(o.storage.begin() + 3);
        });
        auto ck = Checkpoint::open(d->path());
        const std::string missing = ref->tensors()[3].name;
        expect_error([&] { validate_llama_checkpoint(*ck, c); },
                     {d->path(), "missing tensor", missing});
    }
    {
        auto d = build([&](OwnedTensors& o) {
            TensorRecord t = ref->tensors()[0];
            t.name = "model.layers.4.mlp.up_proj.weight";
            o.add(t);
        });
        auto ck = Checkpoint::open(d->path());
        expect_error([&] { validate_llama_checkpoint(*ck, c); },
                     {"model.safetensors", "unexpected tensor", "model.layers.4.mlp.up_proj"});
    }
    {
        auto d = build([](OwnedTensors& o) {
            for (auto& t : o.records) {
                if (t.name == "model.norm.weight") t.shape = {8, 8};
            }
        });
        auto ck = Checkpoint::open(d->path());
        expect_error([&] { validate_llama_checkpoint(*ck, c); },
                     {"model.safetensors", "model.norm.weight", "[8, 8]", "expected [64]"});
    }
    {
        auto d = build([](OwnedTensors& o) {
            for (auto& t : o.records) {
                if (t.name == "model.norm.weight") t.dtype = DType::kI32;
            }
        });
        auto ck = Checkpoint::open(d->path());
        expect_error([&] { validate_llama_checkpoint(*ck, c); },
                     {"model.safetensors", "model.norm.weight", "dtype i32"});
    }
}

TEST(CopyTensorSlice, SlicesAndConverts) {
    // A 3x4 f32 tensor at an odd address, as in a zip archive.
    std::vector<uint8_t> buf(1 + 12 * 4);
    float vals[12];
    for (int i = 0; i < 12; ++i) vals[i] = 0.1f * static_cast<float>(i) - 0.37f;
    std::memcpy(buf.data() + 1, vals, sizeof vals);
    TensorRecord t{"w", DType::kF32, {3, 4}, buf.data() + 1, 48, "mem"};

    float f[4];
    copy_tensor_slice(t, 1, 3, 1, 3, f, DType::kF32);
    EXPECT_EQ(f[0], vals[5]);
    EXPECT_EQ(f[1], vals[6]);
    EXPECT_EQ(f[2], vals[9]);
    EXPECT_EQ(f[3], vals[10]);

    uint16_t h[12];
    copy_tensor_slice(t, 0, 3, 0, 4, h, DType::kBF16);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(h[i], f32_to_bf16(vals[i]));
    copy_tensor_slice(t, 0, 3, 0, 4, h, DType::kF16);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(h[i], f32_to_f16(vals[i]));

    // bf16 source -> f32 is exact; a 1-D tensor is one row.
    uint16_t b16[4] = {f32_to_bf16(1.5f), f32_to_bf16(-2.25f), f32_to_bf16(3.0f), 0};
    TensorRecord v{"n", DType::kBF16, {4}, b16, 8, "mem"};
    float g[2];
    copy_tensor_slice(v, 0, 1, 1, 3, g, DType::kF32);
    EXPECT_EQ(g[0], -2.25f);
    EXPECT_EQ(g[1], 3.0f);

    expect_error([&] { copy_tensor_slice(t, 0, 4, 0, 4, f, DType::kF32); }, {"'w'", "outside"});
    expect_error([&] { copy_tensor_slice(v, 0, 2, 0, 4, f, DType::kF32); }, {"'n'", "outside"});
    TensorRecord ints{"i", DType::kI32, {2}, vals, 8, "mem"};
    expect_error([&] { copy_tensor_slice(ints, 0, 1, 0, 2, f, DType::kF32); }, {"'i'", "i32"});
}

TEST(Layouts, ErrorsForMissingOrUnusableDirectories) {
    TempDir tmp;
    expect_error([&] { Checkpoint::open(tmp / "nope"); }, {"nope", "no such"});
    expect_error([&] { Checkpoint::open(tmp.path()); }, {tmp.path(), "no weights found"});
    test::write_text(tmp / "model-00001-of-00002.safetensors", "x");
    expect_error([&] { Checkpoint::open(tmp.path()); },
                 {"no weights found", "model-00001-of-00002.safetensors", "index"});
    test::write_text(tmp / "weights.pt", "x");
    expect_error([&] { Checkpoint::open_file(tmp / "weights.pt"); }, {"weights.pt", "unknown"});
    expect_error([&] { Checkpoint::open(tmp / "weights.pt"); }, {"not a directory"});
}

TEST(Layouts, IndexMustAgreeWithShards) {
    const std::string src = test::fixture_dir("safetensors_bf16_sharded");
    const std::string index = "model.safetensors.index.json";
    auto edit_index = [&](const TempDir& d, auto fn) {
        test::Bytes b = test::read_bytes(d / index);
        auto j = nlohmann::json::parse(std::string(b.begin(), b.end()));
        fn(j);
        test::write_text(d / index, j.dump(2));
    };
    {
        TempDir d;
        test::copy_dir(src, d.path());
        edit_index(d, [](nlohmann::json& j) {
            j["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
        });
        expect_error([&] { Checkpoint::open(d.path()); }, {"model.norm.weight", "model-0000"});
    }
    {
        TempDir d;
        test::copy_dir(src, d.path());
        edit_index(d, [](nlohmann::json& j) {
            j["weight_map"]["extra.weight"] = "model-00002-of-00002.safetensors";
        });
        expect_error([&] { Checkpoint::open(d.path()); }, {index, "'extra.weight'", "absent"});
    }
    {
        TempDir d;
        test::copy_dir(src, d.path());
        edit_index(d, [](nlohmann::json& j) { j["weight_map"].erase("lm_head.weight"); });
        expect_error([&] { Checkpoint::open(d.path()); },
                     {"model-00002-of-00002.safetensors", "'lm_head.weight'", "not assigned"});
    }
    {
        TempDir d;
        test::copy_dir(src, d.path());
        edit_index(d, [](nlohmann::json& j) { j["weight_map"]["lm_head.weight"] = "../x"; });
        expect_error([&] { Checkpoint::open(d.path()); }, {index, "'../x'"});
    }
    {
        TempDir d;
        test::copy_dir(src, d.path());
        test::write_text(d / index, R"({"weight_map": 3})");
        expect_error([&] { Checkpoint::open(d.path()); }, {index, "weight_map"});
    }
}

TEST(Writer, SingleFileRoundTrip) {
    auto ref = Checkpoint::open(test::case_a_dir());
    TempDir d;
    SafetensorsWriteResult r =
        write_safetensors(d.path(), ref->tensors(), size_t{1} << 30, SafetensorsWriteOptions{});
    ASSERT_EQ(r.files.size(), 1u);
    EXPECT_TRUE(r.files[0].ends_with("/model.safetensors"));
    EXPECT_FALSE(std::filesystem::exists(d / "model.safetensors.index.json"));
    auto back = Checkpoint::open(d.path());
    ASSERT_EQ(back->tensors().size(), ref->tensors().size());
    for (size_t i = 0; i < back->tensors().size(); ++i) {
        const TensorRecord& a = ref->tensors()[i];
        const TensorRecord& b = back->tensors()[i];
        EXPECT_EQ(a.name, b.name);
        EXPECT_EQ(a.shape, b.shape);
        EXPECT_EQ(a.dtype, b.dtype);
        ASSERT_EQ(a.nbytes, b.nbytes);
        EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0);
    }
    // Header length is a multiple of 8, and data offsets are contiguous in name order.
    test::Bytes file = test::read_bytes(d / "model.safetensors");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | file[static_cast<size_t>(i)];
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ(file.size(), 8 + n + r.total_bytes);
    EXPECT_EQ(r.total_bytes, 936192u);
}

TEST(Writer, ShardsWithIndexAndConvertsDtype) {
    auto ref = Checkpoint::open(test::case_a_dir());
    TempDir d;
    SafetensorsWriteOptions opt;
    opt.dtype = DType::kBF16;
    size_t calls = 0;
    opt.progress = [&](size_t done, size_t total, const std::string&) {
        EXPECT_EQ(done, ++calls);
        EXPECT_EQ(total, ref->tensors().size());
    };
    const size_t max = 100000;
    SafetensorsWriteResult r = write_safetensors(d.path(), ref->tensors(), max, opt);
    EXPECT_EQ(calls, ref->tensors().size());
    EXPECT_EQ(r.total_bytes, 936192u / 2);
    ASSERT_GE(r.files.size(), 4u);  // >= 3 shards of <= 100 kB for 468 kB, + index
    const size_t shards = r.files.size() - 1;
    for (size_t s = 0; s < shards; ++s) {
        EXPECT_TRUE(r.files[s].ends_with(safetensors_shard_name(s + 1, shards))) << r.files[s];
    }
    EXPECT_EQ(safetensors_shard_name(2, 12), "model-00002-of-00012.safetensors");
    test::Bytes idx = test::read_bytes(d / "model.safetensors.index.json");
    auto j = nlohmann::json::parse(std::string(idx.begin(), idx.end()));
    EXPECT_EQ(j["metadata"]["total_size"].get<size_t>(), r.total_bytes);
    EXPECT_EQ(j["weight_map"].size(), ref->tensors().size());

    auto back = Checkpoint::open(d.path());
    EXPECT_EQ(back->describe(), str("safetensors, ", shards, " shards"));
    validate_llama_checkpoint(*back, case_a_config());
    std::map<std::string, size_t> shard_bytes;
    for (const TensorRecord& t : back->tensors()) {
        ASSERT_EQ(t.dtype, DType::kBF16);
        shard_bytes[t.file] += t.nbytes;
        EXPECT_EQ(j["weight_map"][t.name].get<std::string>(),
                  std::filesystem::path(t.file).filename().string());
        const TensorRecord* r0 = ref->find(t.name);
        const std::vector<float> want = to_f32(*r0);
        const std::vector<uint16_t> got = raw_u16(t);
        for (size_t k = 0; k < want.size(); ++k) ASSERT_EQ(got[k], f32_to_bf16(want[k]));
    }
    for (const auto& [file, bytes] : shard_bytes) EXPECT_LE(bytes, max) << file;
}

TEST(Writer, RejectsBadInput) {
    TempDir d;
    expect_error([&] { write_safetensors(d.path(), {}, 100); }, {"no tensors"});
    float x[2] = {1, 2};
    TensorRecord a{"a", DType::kF32, {2}, x, 8, "mem"};
    TensorRecord wrong = a;
    wrong.nbytes = 4;
    expect_error([&] { write_safetensors(d.path(), {wrong}, 100); }, {"'a'", "holds 4 bytes"});
    expect_error([&] { write_safetensors(d.path(), {a, a}, 100); }, {"'a'", "twice"});
}

}  // namespace
}  // namespace fot
