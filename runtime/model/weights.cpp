#include "runtime/model/weights.h"

#include <algorithm>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/core/timer.h"
#include "runtime/io/checkpoint.h"
#include "runtime/io/mapped_file.h"

namespace fot {
namespace {

// Source rows per parallel block: big enough to stream, small enough that a block's source
// pages are released soon after they are read.
constexpr size_t kBlockBytes = static_cast<size_t>(kLoadBlockBytes);

// Rows [r0, r1), columns [c0, c1) of `t` into dst (dense, `dt`), in row blocks spread over
// the OpenMP threads; each block's source pages leave this process's resident set once read.
void parallel_copy(const TensorRecord& t, int64_t r0, int64_t r1, int64_t c0, int64_t c1, void* dst,
                   DType dt) {
    const int64_t cols = t.shape.back();
    const size_t src_row = static_cast<size_t>(cols) * dtype_size(t.dtype);
    const size_t dst_row = static_cast<size_t>(c1 - c0) * dtype_size(dt);
    const int64_t per_block = std::max<int64_t>(1, static_cast<int64_t>(kBlockBytes / src_row));
    const int64_t blocks = (r1 - r0 + per_block - 1) / per_block;
    const auto* src = static_cast<const uint8_t*>(t.data);
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) if (blocks > 1)
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t a = r0 + b * per_block, e = std::min(r1, a + per_block);
        try {
            uint8_t* out = static_cast<uint8_t*>(dst) + static_cast<size_t>(a - r0) * dst_row;
            populate_for_write(out, static_cast<size_t>(e - a) * dst_row);
            copy_tensor_slice(t, a, e, c0, c1, out, dt);
        } catch (...) {
#pragma omp critical(fot_load_error)
            if (!error) error = std::current_exception();
        }
        release_mapped_pages(src + static_cast<size_t>(a) * src_row,
                             static_cast<size_t>(e - a) * src_row);
    }
    if (error) std::rethrow_exception(error);
}

struct Loader {
    const Checkpoint& ckpt;
    Backend& backend;
    bool linear_to_bf16 = false;          // kFast on f32 weights
    std::shared_ptr<const void> mapping;  // null: never use the mapping in place
    int64_t bytes = 0;
    int64_t mapped_bytes = 0;

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
        const bool one_d = t.shape.size() == 1;
        Shape shape = one_d ? Shape{c1 - c0} : Shape{r1 - r0, c1 - c0};
        const int64_t cols = t.shape.back();
        const size_t src_row = static_cast<size_t>(cols) * dtype_size(t.dtype);
        const void* first = static_cast<const uint8_t*>(t.data) + static_cast<size_t>(r0) * src_row;
        // Whole rows in the checkpoint's dtype are one contiguous run of the file: on the CPU
        // the mapping itself is the weight, when the run is aligned for its element type
        // (safetensors data offsets and zip members need not be; then it is copied).
        if (mapping && backend.device().kind == DeviceKind::kCpu && dt == t.dtype && c0 == 0 &&
            c1 == cols && reinterpret_cast<uintptr_t>(first) % dtype_size(dt) == 0) {
            std::shared_ptr<const void> keep = mapping;
            Buffer out(const_cast<void*>(first), dt, std::move(shape), Device::cpu(),
                       [keep](void*) {});
            bytes += static_cast<int64_t>(out.nbytes());
            mapped_bytes += static_cast<int64_t>(out.nbytes());
            return out;
        }
        Buffer out = backend.alloc_uninitialized(dt, shape);
        fill(out, t, r0, c0, c1);
        return out;
    }
    // Copies rows [r0, r0 + out's rows) and columns [c0, c1) of `t` into `out` (device or host
    // memory of the backend, in out's dtype).
    void fill(Buffer& out, const TensorRecord& t, int64_t r0, int64_t c0, int64_t c1) {
        bytes += static_cast<int64_t>(out.nbytes());
        if (out.nbytes() == 0) return;
        // Row blocks of the destination ([1, n] for a vector) through the backend: in place on
        // the CPU, through pinned staging on a device.
        TensorView rows_view = out.view();
        if (t.shape.size() == 1) rows_view.shape = {1, c1 - c0};
        const DType dt = out.dtype();
        backend.upload_rows(rows_view, [&](void* host, int64_t row0, int64_t n) {
            parallel_copy(t, r0 + row0, r0 + row0 + n, c0, c1, host, dt);
        });
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
    // Linear weights of one shape (q|k|v, gate|up), rows [r0, r1) of each, back to back in one
    // allocation on a device (split_rows), so that the backend can multiply them with one
    // batched GEMM (Backend::matmul_group). On the CPU each is loaded alone: there the file
    // mapping may be the weight itself, and the CPU backend multiplies them one by one anyway.
    std::vector<Buffer> linear_rows_group(const std::vector<std::string>& names, int64_t r0,
                                          int64_t r1) {
        const TensorRecord& first = get(names[0]);
        const DType dt = linear_dtype(names[0]).value_or(first.dtype);
        bool together = backend.device().kind != DeviceKind::kCpu;
        for (const std::string& n : names) {
            const TensorRecord& t = get(n);
            together = together && t.shape.size() == 2 && t.shape[1] == first.shape[1] &&
                       linear_dtype(n).value_or(t.dtype) == dt;
        }
        std::vector<Buffer> out;
        if (!together) {
            for (const std::string& n : names) out.push_back(linear_rows(n, r0, r1));
            return out;
        }
        const int64_t parts = static_cast<int64_t>(names.size());
        out =
            split_rows(backend.alloc_uninitialized(dt, {parts * (r1 - r0), first.shape[1]}), parts);
        for (size_t i = 0; i < names.size(); ++i)
            fill(out[i], get(names[i]), r0, 0, first.shape[1]);
        return out;
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
                                int tp_rank, int tp_size, Precision precision, bool zero_copy,
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

    Timer timer;
    Loader ld{ckpt, backend, precision == Precision::kFast,
              zero_copy ? ckpt.retain() : std::shared_ptr<const void>()};
    w.embed = ld.rows("model.embed_tokens.weight", w.vocab_begin, w.vocab_begin + w.vocab_rows);
    w.layers.resize(c.num_hidden_layers);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        LayerWeights& L = w.layers[l];
        std::vector<Buffer> qkv =
            ld.linear_rows_group({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                                  p + "self_attn.v_proj.weight"},
                                 a0, a1);
        L.wq = std::move(qkv[0]);
        L.wk = std::move(qkv[1]);
        L.wv = std::move(qkv[2]);
        L.wo = ld.linear_cols(p + "self_attn.o_proj.weight", a0, a1);
        std::vector<Buffer> gate_up =
            ld.linear_rows_group({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"}, i0, i1);
        L.w_gate = std::move(gate_up[0]);
        L.w_up = std::move(gate_up[1]);
        L.w_down = ld.linear_cols(p + "mlp.down_proj.weight", i0, i1);
        L.ln_in = ld.vec_f32(p + "input_layernorm.weight");
        L.ln_post = ld.vec_f32(p + "post_attention_layernorm.weight");
        if (on_layer) on_layer(l + 1);
    }
    w.norm = ld.vec_f32("model.norm.weight");
    w.lm_head = ld.linear_rows("lm_head.weight", w.vocab_begin, w.vocab_begin + w.vocab_rows);
    w.bytes = ld.bytes;
    w.mapped_bytes = ld.mapped_bytes;
    w.load_seconds = timer.seconds();
    return w;
}

}  // namespace fot
