// The demo model of `fotrt make-demo-model` (docs/demo-model.md): a LongLLaMA checkpoint whose
// weights are constructed, not trained, so that it answers the eval tasks
// (runtime/jobs/eval_tasks.h) by induction through its memory layer, at any length and on
// every layout.
//
// Shape: hidden 256, 2 heads of 128, 2 layers, mem_layers [1], W 512, lcl 128, rope_theta 1e14,
// MLPs zero, vocab = the tokenizer's (a BPE model trained here on the tasks' text), rounded up
// to a multiple of 8 (the extra rows never win). The residual holds token codes (unit vectors
// of kCodeDim dimensions whose positive overlaps are <= 1/3) in slots:
//   K  = dimension 0, a constant kappa;  A = the current token's code (embedding);
//   B  = the previous token's code, P = the one before (layer 0, two RoPE previous-token heads
//        reading K only: scores peak at relative offset 1 and 2);
//   R  = the retrieved code (layer 1, the memory layer: query [A; B] against key [B; P] in the
//        48 lowest-frequency RoPE pairs, value A, so a position whose previous two tokens
//        match the current two hands over the token that followed them).
// lm_head reads the readout slot (R; B or P for tests of layer 0).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "runtime/core/dtype.h"

namespace fot {

struct DemoModelOptions {
    char readout = 'R';  // 'R' (the model), 'A', 'B' or 'P' (tests of the construction)
};

struct DemoModel {
    ModelConfig config;
    std::string tokenizer_model;     // serialized sentencepiece model
    std::vector<std::string> names;  // HF tensor names
    std::vector<std::vector<int64_t>> shapes;
    std::vector<std::vector<float>> tensors;  // f32, row-major [out, in]
    std::vector<std::vector<float>> codes;    // codes[v]: token v's code (kCodeDim floats)
};

constexpr int64_t kCodeDim = 48;

// Builds the demo model (trains the tokenizer: about a second). Deterministic.
DemoModel build_demo_model(const DemoModelOptions& options = {});
// Writes config.json, model.safetensors (in `dtype`: f32, bf16 or f16; torch_dtype says which)
// and tokenizer.model into `dir` (created if missing). Throws fot::Error naming the path.
void write_demo_model(const DemoModel& m, const std::string& dir, DType dtype = DType::kF32);

}  // namespace fot
