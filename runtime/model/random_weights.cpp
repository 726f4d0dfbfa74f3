#include "runtime/model/random_weights.h"

#include <random>
#include <vector>

#include "runtime/core/status.h"

namespace fot {
namespace {

// Fills `out` (backend memory) with N(0, stddev) draws of `seed` (ones when stddev is 0).
void random_fill(Backend& backend, const Buffer& out, uint64_t seed, float stddev, int64_t* bytes) {
    const DType dtype = out.dtype();
    const Shape& shape = out.shape();
    Buffer host = Buffer::uninitialized(DType::kF32, shape);  // every element is written
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.f, stddev);
    float* p = host.as<float>();
    for (int64_t i = 0; i < host.numel(); ++i) p[i] = stddev > 0 ? nd(rng) : 1.f;
    if (dtype == DType::kF32) {
        backend.upload(out.view(), p, host.nbytes());
    } else {
        Buffer conv = Buffer::uninitialized(dtype, shape);
        convert_from_f32(p, conv.data(), dtype, static_cast<size_t>(host.numel()));
        backend.upload(out.view(), conv.data(), conv.nbytes());
    }
    *bytes += static_cast<int64_t>(out.nbytes());
}

Buffer random_tensor(Backend& backend, DType dtype, Shape shape, uint64_t seed, float stddev,
                     int64_t* bytes) {
    Buffer out = backend.alloc_uninitialized(dtype, std::move(shape));  // uploaded whole
    random_fill(backend, out, seed, stddev, bytes);
    return out;
}

// `parts` weights of one shape, each drawn as random_tensor draws it (seeds ++*seed in order),
// back to back in one allocation on a device, as load_model_weights groups q|k|v and gate|up.
std::vector<Buffer> random_group(Backend& backend, DType dtype, int64_t parts, int64_t rows,
                                 int64_t cols, uint64_t* seed, float stddev, int64_t* bytes) {
    std::vector<Buffer> out;
    if (backend.device().kind == DeviceKind::kCpu) {
        for (int64_t i = 0; i < parts; ++i)
            out.push_back(random_tensor(backend, dtype, {rows, cols}, ++*seed, stddev, bytes));
        return out;
    }
    out = split_rows(backend.alloc_uninitialized(dtype, {parts * rows, cols}), parts);
    for (const Buffer& b : out) random_fill(backend, b, ++*seed, stddev, bytes);
    return out;
}

}  // namespace

ModelWeights random_model_weights(const ModelConfig& c, Backend& backend, DType dtype,
                                  uint64_t seed, int tp_rank, int tp_size) {
    FOT_CHECK(c.num_attention_heads % tp_size == 0 && c.intermediate_size % tp_size == 0 &&
                  c.vocab_size % tp_size == 0,
              "random weights: tp=", tp_size, " does not divide the model");
    ModelWeights w;
    w.heads = c.num_attention_heads / tp_size;
    w.intermediate = c.intermediate_size / tp_size;
    w.vocab_rows = c.vocab_size / tp_size;
    w.vocab_begin = w.vocab_rows * tp_rank;
    const int64_t C = c.hidden_size, A = w.heads * c.head_dim(), I = w.intermediate;
    const float sd = 0.02f;
    uint64_t s = seed * 1000003 + static_cast<uint64_t>(tp_rank) * 7919;
    int64_t bytes = 0;
    w.embed = random_tensor(backend, dtype, {w.vocab_rows, C}, ++s, sd, &bytes);
    w.layers.resize(c.num_hidden_layers);
    for (auto& L : w.layers) {
        std::vector<Buffer> qkv = random_group(backend, dtype, 3, A, C, &s, sd, &bytes);
        L.wq = std::move(qkv[0]);
        L.wk = std::move(qkv[1]);
        L.wv = std::move(qkv[2]);
        L.wo = random_tensor(backend, dtype, {C, A}, ++s, sd, &bytes);
        std::vector<Buffer> gate_up = random_group(backend, dtype, 2, I, C, &s, sd, &bytes);
        L.w_gate = std::move(gate_up[0]);
        L.w_up = std::move(gate_up[1]);
        L.w_down = random_tensor(backend, dtype, {C, I}, ++s, sd, &bytes);
        L.ln_in = random_tensor(backend, DType::kF32, {C}, ++s, 0.f, &bytes);
        L.ln_post = random_tensor(backend, DType::kF32, {C}, ++s, 0.f, &bytes);
    }
    w.norm = random_tensor(backend, DType::kF32, {C}, ++s, 0.f, &bytes);
    w.lm_head = random_tensor(backend, dtype, {w.vocab_rows, C}, ++s, sd, &bytes);
    w.bytes = bytes;
    return w;
}

}  // namespace fot
