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

// Source bytes one loading thread copies (and then releases) at a time: the transient host
// memory of a copying load is about this times the OpenMP threads.
inline constexpr int64_t kLoadBlockBytes = int64_t{4} << 20;

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
    int64_t mapped_bytes = 0;                 // of which used in place from the file mapping
    double load_seconds = 0;                  // wall time of load_model_weights
};

// Validates the checkpoint against `c` and loads tp slice `tp_rank` of `tp_size`.
// Throws fot::Error naming the tensor or the dimension that does not split.
//
// Memory (docs/performance.md, "Loading"): on the CPU, a tensor slice of whole rows in the
// checkpoint's dtype whose first byte is aligned for that dtype is used in place from the
// file mapping (`zero_copy`; the Buffer keeps the mapping alive through Checkpoint::retain()),
// so loading it reads nothing and its pages become resident on first use, as page cache
// shared with other processes. Everything else (column slices, conversions, unaligned data)
// is copied into uninitialised buffers in parallel row blocks (OpenMP threads), each block's
// source pages dropped from the resident set once read; on a device the blocks go through
// Backend::upload_rows (pinned staging on CUDA). Peak RSS is then about the weights of this
// rank plus a few blocks. Only this rank's slice of each tensor is ever read.
// zero_copy = false forces copies (tests compare the two). `on_layer`, when set, is called
// with the number of decoder layers loaded so far after each one (progress).
ModelWeights load_model_weights(const Checkpoint& ckpt, const ModelConfig& c, Backend& backend,
                                int tp_rank, int tp_size, Precision precision = Precision::kExact,
                                bool zero_copy = true,
                                const std::function<void(int64_t)>& on_layer = {});

}  // namespace fot
