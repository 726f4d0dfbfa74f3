// ModelConfig: the golden config.json files, the defaults of absent keys, one rejected input
// per validation rule (the message must name the key), and the derived quantities.
#include "config/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace fot {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string golden_dir(const std::string& c) {
    return std::string(FOT_TEST_DATA) + "/golden/" + c;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in.good()) << path;
    std::ostringstream os;
    os << in.rdbuf();
    return os.str();
}

Json golden_json(const std::string& c) {
    return Json::parse(read_file(golden_dir(c) + "/config.json"));
}

// Parameter count of a safetensors file, from its header alone: an independent check of
// ModelConfig::parameter_count().
int64_t safetensors_parameter_count(const std::string& path) {
    std::string bytes = read_file(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    Json header = Json::parse(bytes.substr(8, n));
    int64_t total = 0;
    for (const auto& [name, t] : header.items()) {
        if (name == "__metadata__") continue;
        int64_t count = 1;
        for (const auto& d : t["shape"]) count *= d.get<int64_t>();
        total += count;
    }
    return total;
}

TEST(ModelConfigTest, GoldenConfigsParse) {
    struct Expect {
        const char* name;
        int64_t vocab, hidden, heads, layers, inter, w, lcl;
        std::vector<int64_t> mem_layers;
        DType mem_dtype;
        std::optional<std::pair<int64_t, int64_t>> grouping;
    };
    const Expect cases[] = {
        {"case_a", 256, 64, 4, 4, 176, 36, 32, {1, 3}, DType::kF32, std::nullopt},
        {"case_b", 256, 64, 4, 4, 176, 36, 32, {1, 3}, DType::kF32, std::make_pair(2, 8)},
        {"case_c", 256, 64, 4, 4, 176, 64, 32, {}, DType::kF32, std::nullopt},
        {"case_e", 256, 64, 4, 4, 176, 36, 32, {1, 3}, DType::kBF16, std::nullopt},
        {"case_f", 512, 128, 8, 3, 352, 40, 24, {1, 2}, DType::kF32, std::nullopt},
    };
    for (const auto& e : cases) {
        SCOPED_TRACE(e.name);
        Result<ModelConfig> r = load_model_config(golden_dir(e.name) + "/config.json");
        ASSERT_TRUE(r.ok()) << r.status().message();
        const ModelConfig& c = r.value();
        EXPECT_EQ(c.model_type, "longllama");
        EXPECT_EQ(c.vocab_size, e.vocab);
        EXPECT_EQ(c.hidden_size, e.hidden);
        EXPECT_EQ(c.num_attention_heads, e.heads);
        EXPECT_EQ(c.head_dim(), 16);
        EXPECT_EQ(c.num_hidden_layers, e.layers);
        EXPECT_EQ(c.intermediate_size, e.inter);
        EXPECT_EQ(c.max_position_embeddings, e.w);
        EXPECT_EQ(c.last_context_length, e.lcl);
        EXPECT_EQ(c.mem_layers, e.mem_layers);
        EXPECT_EQ(c.mem_dtype, e.mem_dtype);
        EXPECT_EQ(c.mem_attention_grouping, e.grouping);
        EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
        EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
        EXPECT_EQ(c.hidden_act, "silu");
        EXPECT_TRUE(c.mem_positionals);
        EXPECT_FALSE(c.torch_attention);
        EXPECT_FALSE(c.tie_word_embeddings);
        EXPECT_EQ(c.bos_token_id, 1);
        EXPECT_EQ(c.eos_token_id, 2);
        EXPECT_EQ(c.pad_token_id, 0);
        EXPECT_EQ(c.torch_dtype, "float32");
        for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
            bool listed =
                std::find(e.mem_layers.begin(), e.mem_layers.end(), l) != e.mem_layers.end();
            EXPECT_EQ(c.is_mem_layer(l), listed) << "layer " << l;
        }
        // Every case's checkpoint must hold exactly the parameters the config predicts.
        EXPECT_EQ(c.parameter_count(),
                  safetensors_parameter_count(golden_dir(e.name) + "/model.safetensors"));
    }
}

TEST(ModelConfigTest, AbsentKeysTakeTheReferenceDefaults) {
    Json j = golden_json("case_a");
    for (const char* key : {"last_context_length", "rope_theta", "mem_dtype",
                            "mem_attention_grouping", "mem_positionals", "torch_attention",
                            "gradient_checkpoint_every_ith", "torch_dtype", "rms_norm_eps"}) {
        j.erase(key);
    }
    j["max_position_embeddings"] = 2048;  // the default lcl (1024) must fit in W
    Result<ModelConfig> r = parse_model_config(j.dump(), "config.json");
    ASSERT_TRUE(r.ok()) << r.status().message();
    const ModelConfig& c = r.value();
    EXPECT_EQ(c.last_context_length, 1024);
    EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
    EXPECT_EQ(c.mem_dtype, DType::kBF16);
    EXPECT_FALSE(c.mem_attention_grouping.has_value());
    EXPECT_TRUE(c.mem_positionals);
    EXPECT_FALSE(c.torch_attention);
    EXPECT_EQ(c.gradient_checkpoint_every_ith, 1);
    EXPECT_EQ(c.torch_dtype, "");
    EXPECT_EQ(c.mem_layers, (std::vector<int64_t>{1, 3}));
}

TEST(ModelConfigTest, EmptyObjectIsThe3BShape) {
    Result<ModelConfig> r = parse_model_config("{}", "config.json");
    ASSERT_TRUE(r.ok()) << r.status().message();
    const ModelConfig& c = r.value();
    EXPECT_EQ(c.hidden_size, 3200);
    EXPECT_EQ(c.head_dim(), 100);
    EXPECT_EQ(c.max_position_embeddings, 2048);
    EXPECT_EQ(c.last_context_length, 1024);
    EXPECT_TRUE(c.mem_layers.empty());
}

TEST(ModelConfigTest, DefaultLclAgainstSmallWindowIsRejected) {
    Json j = golden_json("case_a");  // W = 36
    j.erase("last_context_length");
    Result<ModelConfig> r = parse_model_config(j.dump(), "config.json");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("last_context_length=1024"));
    EXPECT_THAT(r.status().message(), HasSubstr("max_position_embeddings=36"));
}

TEST(ModelConfigTest, UnsortedMemLayersAreSorted) {
    Json j = golden_json("case_a");
    j["mem_layers"] = {3, 0};
    Result<ModelConfig> r = parse_model_config(j.dump(), "config.json");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r.value().mem_layers, (std::vector<int64_t>{0, 3}));
}

TEST(ModelConfigTest, NullPadTokenMeansNone) {
    Json j = golden_json("case_a");
    j["pad_token_id"] = nullptr;
    Result<ModelConfig> r = parse_model_config(j.dump(), "config.json");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r.value().pad_token_id, -1);
}

struct BadCase {
    const char* label;
    std::function<void(Json&)> mutate;
    std::vector<const char*> message_parts;
};

TEST(ModelConfigTest, InvalidConfigsNameTheKey) {
    const BadCase cases[] = {
        {"hidden as string",
         [](Json& j) { j["hidden_size"] = "64"; },
         {"hidden_size", "must be an integer"}},
        {"layers as float",
         [](Json& j) { j["num_hidden_layers"] = 4.5; },
         {"num_hidden_layers", "must be an integer"}},
        {"eps as string",
         [](Json& j) { j["rms_norm_eps"] = "1e-6"; },
         {"rms_norm_eps", "must be a number"}},
        {"positionals as int",
         [](Json& j) { j["mem_positionals"] = 1; },
         {"mem_positionals", "true or false"}},
        {"zero vocab", [](Json& j) { j["vocab_size"] = 0; }, {"vocab_size=0", "positive"}},
        {"negative hidden",
         [](Json& j) { j["hidden_size"] = -64; },
         {"hidden_size=-64", "positive"}},
        {"zero intermediate", [](Json& j) { j["intermediate_size"] = 0; }, {"intermediate_size=0"}},
        {"zero heads", [](Json& j) { j["num_attention_heads"] = 0; }, {"num_attention_heads=0"}},
        {"zero W",
         [](Json& j) { j["max_position_embeddings"] = 0; },
         {"max_position_embeddings=0"}},
        {"zero lcl", [](Json& j) { j["last_context_length"] = 0; }, {"last_context_length=0"}},
        {"heads do not divide",
         [](Json& j) { j["num_attention_heads"] = 5; },
         {"num_attention_heads=5", "does not divide hidden_size=64"}},
        {"odd head_dim", [](Json& j) { j["num_attention_heads"] = 64; }, {"head_dim=1", "odd"}},
        {"mem layer out of range",
         [](Json& j) {
             j["mem_layers"] = {1, 4};
         },
         {"mem_layers", "4", "num_hidden_layers=4"}},
        {"negative mem layer", [](Json& j) { j["mem_layers"] = {-1}; }, {"mem_layers", "-1"}},
        {"duplicated mem layer",
         [](Json& j) {
             j["mem_layers"] = {1, 3, 1};
         },
         {"mem_layers", "twice"}},
        {"mem_layers not a list", [](Json& j) { j["mem_layers"] = 1; }, {"mem_layers"}},
        {"mem_layers of strings", [](Json& j) { j["mem_layers"] = {"1"}; }, {"mem_layers[0]"}},
        {"unknown mem_dtype", [](Json& j) { j["mem_dtype"] = "int8"; }, {"mem_dtype", "int8"}},
        {"mem_dtype as number", [](Json& j) { j["mem_dtype"] = 16; }, {"mem_dtype"}},
        {"gelu", [](Json& j) { j["hidden_act"] = "gelu"; }, {"hidden_act", "gelu", "silu"}},
        {"rope scaling",
         [](Json& j) {
             j["rope_scaling"] = {{"type", "linear"}, {"factor", 2}};
         },
         {"rope_scaling", "not supported"}},
        {"lcl > W",
         [](Json& j) { j["last_context_length"] = 37; },
         {"last_context_length=37", "max_position_embeddings=36", "RoPE"}},
        {"tied embeddings",
         [](Json& j) { j["tie_word_embeddings"] = true; },
         {"tie_word_embeddings", "not supported"}},
        {"grouping of three",
         [](Json& j) {
             j["mem_attention_grouping"] = {1, 2, 3};
         },
         {"mem_attention_grouping"}},
        {"grouping zero",
         [](Json& j) {
             j["mem_attention_grouping"] = {0, 8};
         },
         {"mem_attention_grouping", "positive"}},
        {"zero theta", [](Json& j) { j["rope_theta"] = 0.0; }, {"rope_theta"}},
        {"bos outside vocab",
         [](Json& j) { j["bos_token_id"] = 256; },
         {"bos_token_id=256", "vocab_size=256"}},
        {"gqa",
         [](Json& j) { j["num_key_value_heads"] = 2; },
         {"num_key_value_heads=2", "not supported"}},
        {"other model", [](Json& j) { j["model_type"] = "mistral"; }, {"model_type", "mistral"}},
        // Absurd sizes are refused before any product of them is formed: W near 2^59 made
        // W x hidden wrap to a 64-byte buffer (heap overflow when the logits were written).
        {"W near 2^59",
         [](Json& j) { j["max_position_embeddings"] = int64_t{1} << 59; },
         {"max_position_embeddings=576460752303423488", "larger than fotrt supports"}},
        {"W above the bound",
         [](Json& j) { j["max_position_embeddings"] = kMaxPositionEmbeddings + 1; },
         {"max_position_embeddings=16777217", "at most 16777216"}},
        {"huge vocab",
         [](Json& j) { j["vocab_size"] = int64_t{1} << 40; },
         {"vocab_size=1099511627776", "larger than"}},
        {"huge hidden",
         [](Json& j) { j["hidden_size"] = int64_t{1} << 40; },
         {"hidden_size=1099511627776", "larger than"}},
        {"huge intermediate",
         [](Json& j) { j["intermediate_size"] = INT64_MAX; },
         {"intermediate_size=9223372036854775807", "larger than"}},
        {"1e12 layers",
         [](Json& j) { j["num_hidden_layers"] = int64_t{1000000000000}; },
         {"num_hidden_layers=1000000000000", "larger than"}},
    };
    for (const auto& bc : cases) {
        SCOPED_TRACE(bc.label);
        Json j = golden_json("case_a");
        bc.mutate(j);
        Result<ModelConfig> r = parse_model_config(j.dump(), "some/dir/config.json");
        ASSERT_FALSE(r.ok());
        const std::string& msg = r.status().message();
        EXPECT_EQ(msg.rfind("some/dir/config.json: ", 0), 0u) << msg;
        for (const char* part : bc.message_parts) EXPECT_THAT(msg, HasSubstr(part));
        EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
}

TEST(ModelConfigTest, MalformedJsonAndMissingFile) {
    Result<ModelConfig> r = parse_model_config("{\"hidden_size\": 64,", "x/config.json");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("x/config.json: invalid JSON"));

    r = parse_model_config("[1, 2]", "x/config.json");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("JSON object"));

    r = load_model_config("/nonexistent/dir/config.json");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/dir/config.json"));
    EXPECT_THROW(r.value(), Error);
}

TEST(ModelConfigTest, ValidateCatchesHandBuiltConfigs) {
    ModelConfig c;
    EXPECT_TRUE(validate_model_config(c, "x").ok());
    c.mem_layers = {6, 6};
    EXPECT_FALSE(validate_model_config(c, "x").ok());
    c.mem_layers = {12, 6};
    EXPECT_FALSE(validate_model_config(c, "x").ok());
    c.mem_layers = {6, 12, 18};
    EXPECT_TRUE(validate_model_config(c, "x").ok());
    c.mem_layers = {26};
    Status s = validate_model_config(c, "x");
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr("mem_layers"));
}

TEST(ModelConfigTest, SizeProductsNeverWrap) {
    // Hand-built (unvalidated) configs: the derived sizes throw instead of wrapping.
    ModelConfig c;
    c.hidden_size = int64_t{1} << 40;
    EXPECT_THROW(c.parameter_count(), Error);
    c.mem_layers = {0, 1, 2};
    c.hidden_size = int64_t{1} << 62;
    EXPECT_THROW(c.memory_bytes_per_token(DType::kF32), Error);
    // At the bounds every size is representable.
    ModelConfig m;
    m.vocab_size = kMaxVocabSize;
    m.hidden_size = kMaxHiddenSize;
    m.intermediate_size = kMaxIntermediateSize;
    m.num_hidden_layers = kMaxHiddenLayers;
    m.max_position_embeddings = kMaxPositionEmbeddings;
    m.num_attention_heads = 2048;
    m.mem_layers = {0, kMaxHiddenLayers - 1};
    ASSERT_TRUE(validate_model_config(m, "x").ok());
    EXPECT_GT(m.parameter_count(), 0);
    const ModelFootprint f = model_footprint(m, 1, 8, 4, DType::kF32);
    EXPECT_GT(f.weights, 0);
    EXPECT_GT(f.window, 0);
    EXPECT_LT(f.window, INT64_MAX);  // not saturated
}

TEST(ModelConfigTest, FootprintAgainstTheMachineNamesTheField) {
    ModelConfig c = parse_model_config(golden_json("case_a").dump(), "a/config.json").value();
    // case_a: 4 layers, hidden 64, 4 heads, intermediate 176, vocab 256, W = 36.
    ModelFootprint f = model_footprint(c, 1, 1, 4, DType::kF32);
    EXPECT_EQ(f.weights, c.parameter_count() * 4);
    // k_rot, v of 4 layers + raw k, v of 2 memory layers + activations + logits, all f32.
    const int64_t W = 36;
    EXPECT_EQ(f.window, 4 * 2 * W * 64 * 4 + 2 * 2 * W * 64 * 4 +
                            W * 4 * (3 * 64 + 4 * 64 + 2 * 176 + 4 * 18) + W * 256 * 4);
    // tp 2 halves the heads, the MLP columns, the vocabulary and the weights.
    ModelFootprint f2 = model_footprint(c, 2, 1, 4, DType::kF32);
    EXPECT_LT(f2.window, f.window);
    EXPECT_EQ(f2.weights, c.parameter_count() / 2 * 4);
    EXPECT_TRUE(check_model_fits(c, "a/config.json", f, 1, 1, int64_t{1} << 30, "x").ok());

    // A window of 2^20 tokens: ~7.6 GB, refused on a 1 GiB machine, naming W.
    c.max_position_embeddings = int64_t{1} << 20;
    ASSERT_TRUE(validate_model_config(c, "a/config.json").ok());
    f = model_footprint(c, 1, 1, 4, DType::kF32);
    Status s = check_model_fits(c, "a/config.json", f, 1, 1, int64_t{1} << 30, "physical memory");
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr("a/config.json: max_position_embeddings=1048576 needs"));
    EXPECT_THAT(s.message(), HasSubstr("more than the 1.00 GiB of physical memory"));
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
    // Two ranks on the node need twice as much.
    c.max_position_embeddings = 36;
    f = model_footprint(c, 1, 1, 4, DType::kF32);
    const int64_t one = f.weights + f.window;
    EXPECT_TRUE(check_model_fits(c, "a", f, 1, 2, 2 * one, "x").ok());
    s = check_model_fits(c, "a", f, 1, 2, 2 * one - 1, "x");
    ASSERT_FALSE(s.ok());
    // Weights dominate here: the message names the fields that size them.
    EXPECT_THAT(s.message(), HasSubstr("the weights (vocab_size=256, hidden_size=64"));
    EXPECT_THAT(s.message(), HasSubstr("x 2 ranks on this node"));
}

TEST(ModelConfigTest, ReleasedCheckpointSizes) {
    // docs/architecture.md §4.1: 3B = 3.426 B params and 38.4 kB of bf16 memory per token;
    // Code-7B = 6.739 B params and 49.2 kB.
    ModelConfig b3;
    b3.mem_layers = {6, 12, 18};
    EXPECT_NEAR(static_cast<double>(b3.parameter_count()), 3.426e9, 0.5e6);
    EXPECT_EQ(b3.memory_bytes_per_token(DType::kBF16), 38400);
    EXPECT_EQ(b3.memory_bytes_per_token(DType::kF32), 76800);

    ModelConfig code7b;
    code7b.hidden_size = 4096;
    code7b.intermediate_size = 11008;
    code7b.num_hidden_layers = 32;
    code7b.vocab_size = 32016;
    code7b.mem_layers = {8, 16, 24};
    EXPECT_NEAR(static_cast<double>(code7b.parameter_count()), 6.739e9, 0.5e6);
    EXPECT_NEAR(static_cast<double>(code7b.memory_bytes_per_token(DType::kBF16)), 49.2e3, 0.1e3);

    ModelConfig none;
    EXPECT_EQ(none.memory_bytes_per_token(DType::kBF16), 0);
}

TEST(ModelConfigTest, JsonRoundTripSortedHfStyle) {
    Result<ModelConfig> r = load_model_config(golden_dir("case_b") + "/config.json");
    ASSERT_TRUE(r.ok()) << r.status().message();
    ModelConfig c = r.value();
    c.mem_dtype = DType::kBF16;
    c.rope_theta = 1e6;
    c.torch_attention = true;
    std::string text = model_config_to_json(c);

    // Keys in sorted order, HF dtype spelling.
    std::vector<std::string> keys;
    Json j = Json::parse(text);
    for (const auto& [k, v] : j.items()) keys.push_back(k);
    std::vector<size_t> positions;
    for (const auto& k : keys) positions.push_back(text.find("\"" + k + "\""));
    EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end())) << text;
    EXPECT_EQ(j["mem_dtype"], "bfloat16");
    EXPECT_TRUE(j["rope_scaling"].is_null());
    EXPECT_EQ(j["mem_attention_grouping"], Json::array({2, 8}));

    Result<ModelConfig> back = parse_model_config(text, "roundtrip");
    ASSERT_TRUE(back.ok()) << back.status().message();
    const ModelConfig& d = back.value();
    EXPECT_EQ(d.vocab_size, c.vocab_size);
    EXPECT_EQ(d.hidden_size, c.hidden_size);
    EXPECT_EQ(d.intermediate_size, c.intermediate_size);
    EXPECT_EQ(d.num_hidden_layers, c.num_hidden_layers);
    EXPECT_EQ(d.num_attention_heads, c.num_attention_heads);
    EXPECT_EQ(d.max_position_embeddings, c.max_position_embeddings);
    EXPECT_EQ(d.last_context_length, c.last_context_length);
    EXPECT_EQ(d.rms_norm_eps, c.rms_norm_eps);
    EXPECT_EQ(d.rope_theta, c.rope_theta);
    EXPECT_EQ(d.mem_layers, c.mem_layers);
    EXPECT_EQ(d.mem_dtype, c.mem_dtype);
    EXPECT_EQ(d.mem_attention_grouping, c.mem_attention_grouping);
    EXPECT_EQ(d.mem_positionals, c.mem_positionals);
    EXPECT_EQ(d.torch_attention, c.torch_attention);
    EXPECT_EQ(d.bos_token_id, c.bos_token_id);
    EXPECT_EQ(d.eos_token_id, c.eos_token_id);
    EXPECT_EQ(d.pad_token_id, c.pad_token_id);
    EXPECT_EQ(d.torch_dtype, c.torch_dtype);

    for (DType t : {DType::kF32, DType::kF16}) {
        c.mem_dtype = t;
        Result<ModelConfig> again = parse_model_config(model_config_to_json(c), "roundtrip");
        ASSERT_TRUE(again.ok());
        EXPECT_EQ(again.value().mem_dtype, t);
    }
}

}  // namespace
}  // namespace fot
