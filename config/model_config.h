// ModelConfig: the Hugging Face config.json of a LongLLaMA checkpoint, every field with the
// default the reference code uses (LongLLaMA's configuration_longllama.py); the released
// checkpoints' values are listed in docs/architecture.md §4.1.
//
// Plain data; load_model_config() parses and validates. Validation messages name the file
// and the key ("config.json: num_attention_heads=5 does not divide hidden_size=64").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/core/status.h"

namespace fot {

struct ModelConfig {
    std::string model_type = "longllama";
    int64_t vocab_size = 32000;
    int64_t hidden_size = 3200;
    int64_t intermediate_size = 8640;
    int64_t num_hidden_layers = 26;
    int64_t num_attention_heads = 32;
    // W: prefix window length and cap of the local cache.
    int64_t max_position_embeddings = 2048;
    // lcl: the tail of an input that goes to the local cache.
    int64_t last_context_length = 1024;
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    std::string hidden_act = "silu";
    std::vector<int64_t> mem_layers;  // sorted, unique, each in [0, num_hidden_layers)
    bool mem_positionals = true;
    DType mem_dtype = DType::kBF16;
    // (heads, queries) per block of memory attention in the reference; result-neutral.
    std::optional<std::pair<int64_t, int64_t>> mem_attention_grouping;
    bool torch_attention = false;
    int64_t gradient_checkpoint_every_ith = 1;
    int64_t bos_token_id = 1;
    int64_t eos_token_id = 2;
    int64_t pad_token_id = 0;
    bool tie_word_embeddings = false;
    std::string torch_dtype;  // as written in config.json ("" when absent)

    int64_t head_dim() const { return hidden_size / num_attention_heads; }
    bool is_mem_layer(int64_t layer) const;
    // Parameters of the checkpoint (embedding + layers + final norm + lm_head). Throws
    // fot::Error when it overflows int64 (only possible for a config that fails validation).
    int64_t parameter_count() const;
    // Bytes of memory keys and values one token occupies across all memory layers in `dtype`
    // (throws like parameter_count).
    int64_t memory_bytes_per_token(DType dtype) const;
};

// Upper bounds of the size fields. Far above any published LLaMA-family model, they keep
// every size the runtime derives from a config (products of a few of these fields, times 8
// bytes) inside int64: a config near 2^63 would otherwise wrap to a small buffer.
constexpr int64_t kMaxVocabSize = int64_t{1} << 24;
constexpr int64_t kMaxHiddenSize = int64_t{1} << 18;
constexpr int64_t kMaxIntermediateSize = int64_t{1} << 20;
constexpr int64_t kMaxHiddenLayers = int64_t{1} << 12;
constexpr int64_t kMaxPositionEmbeddings = int64_t{1} << 24;

// Bytes one rank holds for a model: its tp share of the weights, and the buffers the model
// allocates once (local caches of every layer, activations and logits of one window of W
// rows). Memory, which grows with a document up to the memory capacity, is not counted.
struct ModelFootprint {
    int64_t weights = 0;
    int64_t window = 0;
};
// Mirrors the allocations of runtime/model (LongLlama, MemoryAttentionScratch) for a run with
// `tp` x `mp` ranks per model, weights of `weight_bytes` per element and local caches in
// `cache_dtype`. `c` must have passed validation; saturates at INT64_MAX instead of wrapping.
ModelFootprint model_footprint(const ModelConfig& c, int64_t tp, int64_t mp, int64_t weight_bytes,
                               DType cache_dtype);
// An error naming the field to change when `ranks` ranks of `per_rank` bytes each need more
// than `available` bytes (`available_what` says where that number came from, e.g.
// "physical memory").
Status check_model_fits(const ModelConfig& c, const std::string& origin,
                        const ModelFootprint& per_rank, int64_t tp, int64_t ranks,
                        int64_t available, const std::string& available_what);

// Parses `path` (a config.json). Unknown keys are ignored (HF configs carry many); known keys
// with the wrong type or an invalid value are errors naming the key.
Result<ModelConfig> load_model_config(const std::string& path);
// Same, from JSON text; `origin` names the source in messages.
Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& origin);
// Checks cross-field invariants (heads divide hidden, lcl <= W, mem_layers in range, ...) and
// the upper bounds above.
Status validate_model_config(const ModelConfig& c, const std::string& origin);
// Writes the config back as HF-style JSON (sorted keys), e.g. for `fotrt convert`.
std::string model_config_to_json(const ModelConfig& c);

}  // namespace fot
