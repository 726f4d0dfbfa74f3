// Random LongLLaMA weights for benchmarks and tests: the shapes of a real checkpoint for
// config `c` (this rank's tp slice), values N(0, 0.02) like HF's initializer (norm weights 1),
// in `dtype` (f32, bf16 or f16). Deterministic for (seed, tp_rank, tp_size); values are drawn
// per slice, so different tp layouts give different models (benchmarks only).
#pragma once

#include <cstdint>

#include "config/model_config.h"
#include "runtime/backend/backend.h"
#include "runtime/model/weights.h"

namespace fot {

ModelWeights random_model_weights(const ModelConfig& c, Backend& backend, DType dtype,
                                  uint64_t seed, int tp_rank = 0, int tp_size = 1);

}  // namespace fot
