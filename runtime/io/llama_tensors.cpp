// The tensor list of a LongLLaMA checkpoint, and the check that a checkpoint matches it.
#include <set>

#include "config/model_config.h"
#include "runtime/core/status.h"
#include "runtime/io/checkpoint.h"
#include "runtime/io/quote.h"

namespace fot {

std::vector<ExpectedTensor> expected_llama_tensors(const ModelConfig& c) {
    const int64_t V = c.vocab_size, C = c.hidden_size, I = c.intermediate_size;
    std::vector<ExpectedTensor> out;
    out.push_back({"model.embed_tokens.weight", {V, C}});
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        const std::string p = str("model.layers.", i, ".");
        for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
            out.push_back({p + "self_attn." + proj + ".weight", {C, C}});
        }
        out.push_back({p + "mlp.gate_proj.weight", {I, C}});
        out.push_back({p + "mlp.up_proj.weight", {I, C}});
        out.push_back({p + "mlp.down_proj.weight", {C, I}});
        out.push_back({p + "input_layernorm.weight", {C}});
        out.push_back({p + "post_attention_layernorm.weight", {C}});
    }
    out.push_back({"model.norm.weight", {C}});
    if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, C}});
    return out;
}

void validate_llama_checkpoint(const Checkpoint& ckpt, const ModelConfig& c) {
    const std::string where = ckpt.path().empty() ? ckpt.describe() : ckpt.path();
    std::set<std::string> expected_names;
    for (const ExpectedTensor& e : expected_llama_tensors(c)) {
        expected_names.insert(e.name);
        const TensorRecord* t = ckpt.find(e.name);
        FOT_CHECK(t != nullptr, where, ": missing tensor ", safe_quote(e.name), " (expected shape ",
                  shape_str(e.shape), ")");
        FOT_CHECK(t->dtype == DType::kF32 || t->dtype == DType::kBF16 || t->dtype == DType::kF16,
                  t->file, ": tensor ", safe_quote(e.name), " has dtype ", dtype_name(t->dtype),
                  "; weights must be f32, bf16 or f16");
        FOT_CHECK(t->shape == e.shape, t->file, ": tensor ", safe_quote(e.name), " has shape ",
                  shape_str(t->shape), ", expected ", shape_str(e.shape),
                  " for this config.json (vocab ", c.vocab_size, ", hidden ", c.hidden_size,
                  ", intermediate ", c.intermediate_size, ")");
    }
    for (const TensorRecord& t : ckpt.tensors()) {
        if (expected_names.count(t.name)) continue;
        // A tied checkpoint may still carry lm_head.weight; it must then equal the embedding
        // shape (its values are not used).
        if (c.tie_word_embeddings && t.name == "lm_head.weight") {
            FOT_CHECK(t.shape == Shape({c.vocab_size, c.hidden_size}), t.file,
                      ": tensor 'lm_head.weight' has shape ", shape_str(t.shape), ", expected ",
                      shape_str({c.vocab_size, c.hidden_size}));
            continue;
        }
        FOT_THROW(t.file, ": unexpected tensor ", safe_quote(t.name), " (not a weight of a ",
                  c.num_hidden_layers, "-layer LongLLaMA as described by config.json)");
    }
}

}  // namespace fot
