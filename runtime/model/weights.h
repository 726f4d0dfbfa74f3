// ModelWeights: this rank's slice of a LongLLaMA checkpoint, on the backend's device.
//
// Tensor parallelism (Megatron style) decides the slices: q/k/v/gate/up keep the rows of
// this rank's heads / intermediate columns, o/down keep the matching columns, the embedding
// and lm_head keep this rank's vocabulary rows. Only those bytes are read from the
// checkpoint (mmap-ed), so no rank ever holds the full model when tp > 1.
// Linear weights keep the checkpoint's dtype (f32, bf16 or f16): the CPU backend widens bf16
// tiles on the fly instead of keeping a second f32 copy. Norm weights are converted to f32.
// Precision::kFast on an f32 checkpoint converts the linear weights (q, k, v, o, gate, up,
// down, lm_head; not the norms, not the embedding) to bf16 at load (nearest even), so fast
// mode always multiplies bf16 operands.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "config/model_config.h"
#include "runtime/backend/backend.h"
#include "runtime/core/precision.h"
#include "runtime/core/tensor.h"

namespace fot {

class Checkpoint;

struct LayerWeights {
    Buffer wq, wk, wv;      // [H_r * D, C]
    Buffer wo;              // [C, H_r * D]
    Buffer w_gate, w_up;    // [I_r, C]
    Buffer w_down;          // [C, I_r]
    Buffer ln_in, ln_post;  // [C] f32
};

struct ModelWeights {
    Buffer embed;  // [V_r, C]
    std::vector<LayerWeights> layers;
    Buffer norm;                              // [C] f32
    Buffer lm_head;                           // [V_r, C]
    int64_t vocab_begin = 0, vocab_rows = 0;  // this rank's vocabulary slice
    int64_t heads = 0;                        // H_r: heads on this rank
    int64_t intermediate = 0;                 // I_r
    int64_t bytes = 0;                        // device bytes of all weights on this rank
};

// Validates the checkpoint against `c` and loads tp slice `tp_rank` of `tp_size`.
// Throws fot::Error naming the tensor or the dimension that does not split. `on_layer`, when
// set, is called with the number of decoder layers loaded so far after each one (progress).
ModelWeights load_model_weights(const Checkpoint& ckpt, const ModelConfig& c, Backend& backend,
                                int tp_rank, int tp_size, Precision precision = Precision::kExact,
                                const std::function<void(int64_t)>& on_layer = {});

}  // namespace fot
