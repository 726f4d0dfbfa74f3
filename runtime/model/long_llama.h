// LongLlama: the LongLLaMA forward with FoT memory, written once against Backend& and the
// tp / mp Communicators (shared/reference/longllama.md §2 is the specification).
//
// One call = one reference model call over `ids`:
//  - The prefix [0, N - lcl) runs in windows of W tokens. Without a past (first call after
//    reset()), each window attends causally to itself and, in memory layers, to all memory;
//    then memory layers append the window's raw keys and values to memory. Other layers keep
//    nothing. With a past, windows go through the local cache (below).
//  - The tail [N - lcl, N) runs with the local cache kept (every layer).
//  - Each later call (generation) appends to the local cache; when local + new > W the whole
//    local cache is flushed first: into memory for memory layers (before attending), dropped
//    for the others. RoPE positions are slots in the local cache; memory keys are unrotated.
//  - Memory layers take one softmax over [local, memory] (computed as merged partials).
// Parallelism: heads, MLP columns and vocabulary are split over `tp` (one all-reduce after
// o_proj and down_proj, one after the vocab-parallel embedding). Memory blocks are placed
// on mp rank (block index mod mp); each mp rank attends over its shard, partials are
// all-gathered over `mp` and merged in rank order; mp rank 0 folds in the local part.
// Every rank of an mp group computes identical activations.
//
// Not thread-safe: one call at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "config/model_config.h"
#include "config/run_config.h"
#include "parallel/communicator.h"
#include "runtime/backend/backend.h"
#include "runtime/core/precision.h"
#include "runtime/memory/memory_attention.h"
#include "runtime/memory/memory_store.h"
#include "runtime/model/weights.h"

namespace fot {

struct ModelOptions {
    DType mem_dtype = DType::kBF16;
    int64_t last_context_length = 1024;
    int64_t mem_capacity_tokens = 0;  // per rank; 0 = grow on demand
    Retrieval retrieval = Retrieval::kDense;
    int64_t k = 128;
    int world_rank = 0;  // for log messages and fault injection (FOT_INJECT_FAULT)
    // kFast keeps the local key/value caches (k_rot, v) in bf16; the backend's own
    // set_precision() selects the arithmetic. The residual stream is f32 in both modes.
    Precision precision = Precision::kExact;
};

// Which rows of a call need logits.
enum class LogitsRows { kNone, kLast, kAll };

struct ForwardOptions {
    LogitsRows logits = LogitsRows::kNone;
    // Receives this rank's vocabulary slice of the logits, window by window:
    // (index of the first row within the call, logits [rows, V_r]). The view is valid only
    // during the callback.
    std::function<void(int64_t, TensorView)> on_logits;
    // Debug/test hook: (index, first row, hidden [rows, C]) where index 0 = embeddings,
    // i = output of layer i-1, num_layers + 1 = after the final norm.
    std::function<void(int64_t, int64_t, TensorView)> on_hidden;
};

class LongLlama {
  public:
    LongLlama(const ModelConfig& config, ModelWeights weights, Backend& backend,
              parallel::Communicator& tp, parallel::Communicator& mp, ModelOptions options);

    // Forgets memory and local caches: the next call starts a new document.
    void reset();
    // One model call over ids (see above). Throws fot::Error for ids out of the vocabulary, an
    // empty input or a memory overflow (before any state changes when it can be foreseen).
    void forward(const std::vector<int32_t>& ids, const ForwardOptions& opts);

    // Memory tokens the reference would hold per memory layer (all mp ranks together).
    int64_t memory_tokens() const { return mem_tokens_; }
    // Memory tokens on this rank (per memory layer).
    int64_t memory_tokens_local() const;
    // Entries in the local cache of `layer`.
    int64_t local_tokens(int64_t layer) const { return local_[layer].len; }
    // Absolute position the next token gets.
    int64_t next_position() const { return next_pos_; }
    // Memory tokens that feeding `n` more tokens would add (all ranks), for capacity checks.
    int64_t memory_growth_for(int64_t n) const;

    const ModelConfig& config() const { return config_; }
    const ModelOptions& options() const { return options_; }
    const MemoryStore& memory() const { return memory_; }
    const ModelWeights& weights() const { return weights_; }
    // Memory-attention statistics of this rank since construction (or reset_stats()).
    const MemoryAttentionStats& memory_stats() const { return mem_stats_; }
    void reset_stats() { mem_stats_ = {}; }
    int64_t vocab_begin() const { return weights_.vocab_begin; }
    int64_t vocab_rows() const { return weights_.vocab_rows; }

  private:
    struct LocalCache {
        Buffer k_rot;  // [H_r, W, D] f32 (bf16 in kFast), rotated at slot index
        Buffer v;      // [H_r, W, D] f32 (bf16 in kFast)
        Buffer k_raw;  // [W, H_r * D] f32 (memory layers: flushed into memory)
        Buffer v_raw;  // [W, H_r * D] f32 (memory layers)
        int64_t len = 0;
    };

    void run_window(const int32_t* ids, int64_t T, int64_t row0, bool use_cache,
                    const ForwardOptions& opts);
    void attention(int64_t layer, int64_t T);
    void check_memory_fits(int64_t n) const;

    ModelConfig config_;
    ModelWeights weights_;
    Backend& backend_;
    parallel::Communicator& tp_;
    parallel::Communicator& mp_;
    ModelOptions options_;
    int64_t W_, H_, D_, C_;
    std::vector<int64_t> mem_slot_;  // layer -> memory slot, -1 for non-memory layers
    MemoryStore memory_;
    std::vector<LocalCache> local_;
    bool has_past_ = false;
    int64_t next_pos_ = 0;
    int64_t mem_tokens_ = 0;  // global memory size per memory layer
    int64_t mem_blocks_ = 0;  // blocks placed so far (block b lives on mp rank b % mp)
    // Scratch for one window of up to W tokens.
    Buffer x_, xn_, q_, k_, v_, attn_, proj_, gate_, up_, part_, logits_;
    MemoryAttentionScratch mem_scratch_;
    MemoryAttentionStats mem_stats_;
};

}  // namespace fot
