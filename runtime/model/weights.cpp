#include "runtime/model/weights.h"

#include <optional>
#include <string>

#include "runtime/core/status.h"
#include "runtime/io/checkpoint.h"

namespace fot {
namespace {

struct Loader {
    const Checkpoint& ckpt;
    Backend& backend;
    bool linear_to_bf16 = false;  // kFast on f32 weights
    int64_t bytes = 0;

    const TensorRecord& get(const std::string& name) {
        const TensorRecord* t = ckpt.find(name);
        FOT_CHECK(t, "checkpoint has no tensor '", name, "'");
        return *t;
    }

    // Rows [r0, r1) and columns [c0, c1) of a 2-D tensor, in `dtype` (or its own dtype).
    Buffer slice(const std::string& name, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                 std::optional<DType> dtype = std::nullopt) {
        const TensorRecord& t = get(name);
        const DType dt = dtype.value_or(t.dtype);
        Shape shape = t.shape.size() == 1 ? Shape{c1 - c0} : Shape{r1 - r0, c1 - c0};
        Buffer out = backend.alloc(dt, shape);
        if (out.device().kind == DeviceKind::kCpu) {
            copy_tensor_slice(t, r0, r1, c0, c1, out.data(), dt);
        } else {
            Buffer host(dt, shape);
            copy_tensor_slice(t, r0, r1, c0, c1, host.data(), dt);
            backend.upload(out.view(), host.data(), host.nbytes());
        }
        bytes += static_cast<int64_t>(out.nbytes());
        return out;
    }
    Buffer rows(const std::string& name, int64_t r0, int64_t r1) {
        return slice(name, r0, r1, 0, get(name).shape[1]);
    }
    // A linear (GEMM) weight: bf16 instead of f32 when linear_to_bf16.
    std::optional<DType> linear_dtype(const std::string& name) {
        if (linear_to_bf16 && get(name).dtype == DType::kF32) return DType::kBF16;
        return std::nullopt;
    }
    Buffer linear_rows(const std::string& name, int64_t r0, int64_t r1) {
        return slice(name, r0, r1, 0, get(name).shape[1], linear_dtype(name));
    }
    Buffer linear_cols(const std::string& name, int64_t c0, int64_t c1) {
        return slice(name, 0, get(name).shape[0], c0, c1, linear_dtype(name));
    }
    Buffer vec_f32(const std::string& name) {
        return slice(name, 0, 1, 0, get(name).shape[0], DType::kF32);
    }
};

void check_split(int64_t n, int tp, const char* what) {
    FOT_CHECK(n % tp == 0, "tensor parallelism: --tp ", tp, " does not divide ", what, "=", n);
}

}  // namespace

ModelWeights load_model_weights(const Checkpoint& ckpt, const ModelConfig& c, Backend& backend,
                                int tp_rank, int tp_size, Precision precision,
                                const std::function<void(int64_t)>& on_layer) {
    validate_llama_checkpoint(ckpt, c);
    check_split(c.num_attention_heads, tp_size, "num_attention_heads");
    check_split(c.intermediate_size, tp_size, "intermediate_size");
    check_split(c.vocab_size, tp_size, "vocab_size");

    ModelWeights w;
    w.heads = c.num_attention_heads / tp_size;
    w.intermediate = c.intermediate_size / tp_size;
    w.vocab_rows = c.vocab_size / tp_size;
    w.vocab_begin = w.vocab_rows * tp_rank;
    const int64_t D = c.head_dim();
    const int64_t a0 = w.heads * D * tp_rank, a1 = a0 + w.heads * D;
    const int64_t i0 = w.intermediate * tp_rank, i1 = i0 + w.intermediate;

    Loader ld{ckpt, backend, precision == Precision::kFast};
    w.embed = ld.rows("model.embed_tokens.weight", w.vocab_begin, w.vocab_begin + w.vocab_rows);
    w.layers.resize(c.num_hidden_layers);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        LayerWeights& L = w.layers[l];
        L.wq = ld.linear_rows(p + "self_attn.q_proj.weight", a0, a1);
        L.wk = ld.linear_rows(p + "self_attn.k_proj.weight", a0, a1);
        L.wv = ld.linear_rows(p + "self_attn.v_proj.weight", a0, a1);
        L.wo = ld.linear_cols(p + "self_attn.o_proj.weight", a0, a1);
        L.w_gate = ld.linear_rows(p + "mlp.gate_proj.weight", i0, i1);
        L.w_up = ld.linear_rows(p + "mlp.up_proj.weight", i0, i1);
        L.w_down = ld.linear_cols(p + "mlp.down_proj.weight", i0, i1);
        L.ln_in = ld.vec_f32(p + "input_layernorm.weight");
        L.ln_post = ld.vec_f32(p + "post_attention_layernorm.weight");
        if (on_layer) on_layer(l + 1);
    }
    w.norm = ld.vec_f32("model.norm.weight");
    w.lm_head = ld.linear_rows("lm_head.weight", w.vocab_begin, w.vocab_begin + w.vocab_rows);
    w.bytes = ld.bytes;
    return w;
}

}  // namespace fot
