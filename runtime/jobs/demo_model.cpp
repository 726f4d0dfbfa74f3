#include "runtime/jobs/demo_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "runtime/core/status.h"
#include "runtime/io/checkpoint.h"
#include "runtime/io/safetensors_writer.h"
#include "runtime/io/tokenizer.h"
#include "runtime/io/tokenizer_train.h"
#include "runtime/jobs/eval_tasks.h"

namespace fot {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kHidden = 256, kHeads = 2, kHeadDim = 128, kHalf = kHeadDim / 2;
// W is not a power of two (nor round): a needle at depth 0.5 of a 4k or 16k prompt would
// otherwise land on a window start systematically (see "Window starts" in docs/demo-model.md).
constexpr int64_t kWindow = 509, kLcl = 128, kInter = 64;
constexpr double kTheta = 1e14;
// Slots of the residual stream.
constexpr int64_t kSlotK = 0, kSlotA = 1, kSlotB = kSlotA + kCodeDim, kSlotP = kSlotB + kCodeDim,
                  kSlotR = kSlotP + kCodeDim;
static_assert(kSlotR + kCodeDim <= kHidden, "slots must fit the hidden size");
// kappa dominates the residual's norm, so every RMSNorm is a near-constant scale.
constexpr float kKappa = 16.f;
// Layer 0: previous-token heads in RoPE pairs [0, kPrevPairs), pair p weighted 1/(1+p); the
// peak score is kPrevGain * sum(1/(1+p)) and the runner-up offset is ~20% lower (>= 15 nats).
constexpr int64_t kPrevPairs = 10;
constexpr float kPrevGain = 30.f;
// Layer 1: induction score g per matched token (full bigram match 2g, one token ~g).
constexpr float kMatchGain = 60.f;
// lm_head: logit of token v = kOutGain * code(v) . R.
constexpr float kOutGain = 20.f;
// Codes: the memory layer's query/key pairs are the kCodeDim lowest-frequency ones.
constexpr int64_t kFirstMemPair = kHalf - kCodeDim;

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// `n` sign codes of kCodeDim dimensions (unit norm) whose pairwise dot products are <= 1/3:
// greedy over a fixed random stream. Negative overlaps are harmless (they lower a score).
std::vector<std::vector<float>> make_codes(int64_t n) {
    std::vector<uint64_t> acc;
    uint64_t s = 0x5eed;
    const int max_dot = static_cast<int>(kCodeDim) / 3;  // in units of 1/kCodeDim
    while (static_cast<int64_t>(acc.size()) < n) {
        const uint64_t v = splitmix(s) & ((uint64_t{1} << kCodeDim) - 1);
        bool ok = true;
        for (uint64_t a : acc) {
            const int dot = static_cast<int>(kCodeDim) - 2 * __builtin_popcountll(v ^ a);
            if (dot > max_dot) {
                ok = false;
                break;
            }
        }
        if (ok) acc.push_back(v);
    }
    std::vector<std::vector<float>> codes;
    const float x = 1.f / std::sqrt(static_cast<float>(kCodeDim));
    for (uint64_t v : acc) {
        std::vector<float> c(kCodeDim);
        for (int64_t i = 0; i < kCodeDim; ++i) c[static_cast<size_t>(i)] = (v >> i) & 1 ? x : -x;
        codes.push_back(std::move(c));
    }
    return codes;
}

float inv_freq(int64_t pair) {
    const float e = static_cast<float>(2 * pair) / static_cast<float>(kHeadDim);
    return 1.0f / std::pow(static_cast<float>(kTheta), e);
}

struct Mat {
    int64_t rows, cols;
    std::vector<float> v;
    Mat(int64_t r, int64_t c) : rows(r), cols(c), v(static_cast<size_t>(r * c), 0.f) {}
    float& at(int64_t r, int64_t c) { return v[static_cast<size_t>(r * cols + c)]; }
};

}  // namespace

DemoModel build_demo_model(const DemoModelOptions& options) {
    FOT_CHECK(options.readout == 'R' || options.readout == 'A' || options.readout == 'B' ||
                  options.readout == 'P',
              "demo model: readout must be R, A, B or P");
    DemoModel m;
    m.tokenizer_model = train_bpe_tokenizer(eval_training_sentences(), 512);
    // The vocabulary size: load the model through the runtime's tokenizer.
    const fs::path tmp =
        fs::temp_directory_path() / ("fot_demo_tok_" + std::to_string(::getpid()) + ".model");
    {
        std::ofstream f(tmp, std::ios::binary);
        f << m.tokenizer_model;
        FOT_CHECK(f.good(), "demo model: cannot write ", tmp.string());
    }
    int64_t n_pieces = 0;
    try {
        n_pieces = Tokenizer::load(tmp.string())->vocab_size();
    } catch (...) {
        fs::remove(tmp);
        throw;
    }
    fs::remove(tmp);
    const int64_t V = (n_pieces + 7) / 8 * 8;

    ModelConfig& c = m.config;
    c.vocab_size = V;
    c.hidden_size = kHidden;
    c.intermediate_size = kInter;
    c.num_hidden_layers = 2;
    c.num_attention_heads = kHeads;
    c.max_position_embeddings = kWindow;
    c.last_context_length = kLcl;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = kTheta;
    c.mem_layers = {1};
    c.torch_dtype = "float32";

    m.codes = make_codes(n_pieces);
    const auto& codes = m.codes;
    const float sq_c = std::sqrt(static_cast<float>(kHidden));
    // RMSNorm scales at each norm (the slots hold unit codes next to kappa).
    const float s0 = sq_c / std::sqrt(kKappa * kKappa + 1.f);
    const float s1 = sq_c / std::sqrt(kKappa * kKappa + 3.f);
    const float sf = sq_c / std::sqrt(kKappa * kKappa + 4.f);
    const float sqrt_d = std::sqrt(static_cast<float>(kHeadDim));

    auto add = [&](const std::string& name, Mat&& t) {
        m.names.push_back(name);
        m.shapes.push_back({t.rows, t.cols});
        m.tensors.push_back(std::move(t.v));
    };
    auto add_vec = [&](const std::string& name, int64_t n, float value) {
        m.names.push_back(name);
        m.shapes.push_back({n});
        m.tensors.push_back(std::vector<float>(static_cast<size_t>(n), value));
    };

    Mat embed(V, kHidden);
    for (int64_t v = 0; v < n_pieces; ++v) {
        embed.at(v, kSlotK) = kKappa;
        for (int64_t i = 0; i < kCodeDim; ++i) {
            embed.at(v, kSlotA + i) = codes[static_cast<size_t>(v)][static_cast<size_t>(i)];
        }
    }
    add("model.embed_tokens.weight", std::move(embed));

    const int64_t A = kHeads * kHeadDim;
    for (int64_t layer = 0; layer < 2; ++layer) {
        Mat wq(A, kHidden), wk(A, kHidden), wv(A, kHidden), wo(kHidden, A);
        if (layer == 0) {
            // Head h peaks at offset h + 1: q = alpha (real), k = alpha e^{i (h+1) f} per pair,
            // so the score is sum_p alpha_p^2 cos(f_p (d - h - 1)) / sqrt(D).
            for (int64_t h = 0; h < 2; ++h) {
                for (int64_t p = 0; p < kPrevPairs; ++p) {
                    const float alpha = std::sqrt(kPrevGain * sqrt_d / static_cast<float>(1 + p));
                    const float phi = static_cast<float>(h + 1) * inv_freq(p);
                    const float in = 1.f / (kKappa * s0);
                    wq.at(h * kHeadDim + p, kSlotK) = alpha * in;
                    wk.at(h * kHeadDim + p, kSlotK) = alpha * std::cos(phi) * in;
                    wk.at(h * kHeadDim + p + kHalf, kSlotK) = alpha * std::sin(phi) * in;
                }
                for (int64_t i = 0; i < kCodeDim; ++i) {
                    wv.at(h * kHeadDim + i, kSlotA + i) = 1.f / s0;
                    wo.at((h == 0 ? kSlotB : kSlotP) + i, h * kHeadDim + i) = 1.f;
                }
            }
        } else {
            // Head 0: query [A; B] against key [B; P], component i in pair kFirstMemPair + i
            // (first and second half of the pair); head 1 is idle (zero).
            const float gamma = std::sqrt(kMatchGain * sqrt_d) / s1;
            for (int64_t i = 0; i < kCodeDim; ++i) {
                const int64_t p = kFirstMemPair + i;
                wq.at(p, kSlotA + i) = gamma;
                wq.at(p + kHalf, kSlotB + i) = gamma;
                wk.at(p, kSlotB + i) = gamma;
                wk.at(p + kHalf, kSlotP + i) = gamma;
                wv.at(i, kSlotA + i) = 1.f / s1;
                wo.at(kSlotR + i, i) = 1.f;
            }
        }
        const std::string pre = "model.layers." + std::to_string(layer) + ".";
        add(pre + "self_attn.q_proj.weight", std::move(wq));
        add(pre + "self_attn.k_proj.weight", std::move(wk));
        add(pre + "self_attn.v_proj.weight", std::move(wv));
        add(pre + "self_attn.o_proj.weight", std::move(wo));
        add(pre + "mlp.gate_proj.weight", Mat(kInter, kHidden));
        add(pre + "mlp.up_proj.weight", Mat(kInter, kHidden));
        add(pre + "mlp.down_proj.weight", Mat(kHidden, kInter));
        add_vec(pre + "input_layernorm.weight", kHidden, 1.f);
        add_vec(pre + "post_attention_layernorm.weight", kHidden, 1.f);
    }
    add_vec("model.norm.weight", kHidden, 1.f);
    const int64_t slot = options.readout == 'R'   ? kSlotR
                         : options.readout == 'A' ? kSlotA
                         : options.readout == 'B' ? kSlotB
                                                  : kSlotP;
    Mat head(V, kHidden);
    for (int64_t v = 0; v < n_pieces; ++v) {
        for (int64_t i = 0; i < kCodeDim; ++i) {
            head.at(v, slot + i) =
                kOutGain * codes[static_cast<size_t>(v)][static_cast<size_t>(i)] / sf;
        }
    }
    add("lm_head.weight", std::move(head));
    return m;
}

void write_demo_model(const DemoModel& m, const std::string& dir, DType dtype) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    FOT_CHECK(!ec && fs::is_directory(dir), "cannot create the directory ", dir, ": ",
              ec.message());
    std::vector<TensorRecord> records;
    for (size_t i = 0; i < m.names.size(); ++i) {
        TensorRecord r;
        r.name = m.names[i];
        r.dtype = DType::kF32;
        r.shape = Shape(m.shapes[i]);
        r.data = m.tensors[i].data();
        r.nbytes = m.tensors[i].size() * sizeof(float);
        records.push_back(std::move(r));
    }
    SafetensorsWriteOptions wo;
    wo.dtype = dtype;
    write_safetensors(dir, records, size_t{1} << 40, wo);
    ModelConfig config = m.config;
    config.torch_dtype = dtype == DType::kF32    ? "float32"
                         : dtype == DType::kBF16 ? "bfloat16"
                                                 : "float16";
    auto write = [&](const std::string& name, const std::string& bytes) {
        const fs::path p = fs::path(dir) / name;
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
        f << bytes;
        f.close();
        FOT_CHECK(f.good(), "cannot write ", p.string());
    };
    write("config.json", model_config_to_json(config) + "\n");
    write("tokenizer.model", m.tokenizer_model);
}

}  // namespace fot
