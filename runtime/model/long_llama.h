// LongLlama: the LongLLaMA forward with FoT memory, written once against Backend& and the
// tp / mp Communicators. The specification is the published LongLLaMA reference code
// (modeling_longllama.py); docs/architecture.md §4 states its semantics and §5 follows one
// window through this file. The model holds weights and per-call scratch; the state of a
// document lives in a Sequence.
//
// One call = one reference model call over `ids` on one sequence:
//  - The prefix [0, N - lcl) runs in windows of W tokens. Without a past (first call after
//    Sequence::reset()), each window attends causally to itself and, in memory layers, to all
//    memory; then memory layers append the window's raw keys and values to memory. Other
//    layers keep nothing. With a past, windows go through the local cache (below).
//  - The tail [N - lcl, N) runs with the local cache kept (every layer).
//  - Each later call (generation) appends to the local cache; when local + new > W the whole
//    local cache is flushed first: into memory for memory layers (before attending), dropped
//    for the others. RoPE positions are slots in the local cache; memory keys are unrotated.
//  - Memory layers take one softmax over [local, memory] (computed as merged partials); the
//    memory part comes from the model's MemoryRetriever (dense or exact top-k).
// decode() runs one token for each of B sequences in one step: the GEMMs see B rows, the
// attention runs per sequence; each sequence gets what a one-token forward() would give it.
// Parallelism: heads, MLP columns and vocabulary are split over `tp` (one all-reduce after
// o_proj and down_proj, one after the vocab-parallel embedding). Memory blocks are placed
// on mp rank (block index mod mp); each mp rank attends over its shard, partials are
// all-gathered over `mp` and merged in rank order; mp rank 0 folds in the local part.
// Every rank of an mp group computes identical activations.
//
// Not thread-safe: one call at a time (the scratch is shared by all sequences).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "config/run_config.h"
#include "parallel/communicator.h"
#include "runtime/backend/backend.h"
#include "runtime/core/precision.h"
#include "runtime/memory/memory_store.h"
#include "runtime/memory/retriever.h"
#include "runtime/model/sequence.h"
#include "runtime/model/weights.h"

namespace fot {

struct ModelOptions {
    DType mem_dtype = DType::kBF16;
    int64_t last_context_length = 1024;
    int64_t mem_capacity_tokens = 0;  // default per rank for new sequences; 0 = grow on demand
    Retrieval retrieval = Retrieval::kDense;
    int64_t k = 128;
    // A registered retriever's name (register_memory_retriever); empty = `retrieval`'s.
    std::string retriever;
    int world_rank = 0;  // for log messages
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
    // Called on the host before each window (and each decode step) starts, with the index
    // of its first row within the call: jobs keep the control plane alive from it during a
    // long prefill. It must not call the model.
    std::function<void(int64_t)> before_window;
    // Debug/test hook: (index, first row, hidden [rows, C]) where index 0 = embeddings,
    // i = output of layer i-1, num_layers + 1 = after the final norm.
    std::function<void(int64_t, int64_t, TensorView)> on_hidden;
};

class LongLlama {
  public:
    LongLlama(const ModelConfig& config, ModelWeights weights, Backend& backend,
              parallel::Communicator& tp, parallel::Communicator& mp, ModelOptions options);

    // A new, empty document. mem_capacity_tokens < 0 takes options().mem_capacity_tokens.
    // Collective in the sense that every rank of the tp x mp group must make the same calls.
    Sequence new_sequence(int64_t mem_capacity_tokens = -1) const;

    // One model call over ids on `seq` (see above). Throws fot::Error for ids out of the
    // vocabulary, an empty input or a memory overflow (before any state changes when it can be
    // foreseen).
    void forward(Sequence& seq, const std::vector<int32_t>& ids, const ForwardOptions& opts);
    // forward() one step (one window of the prefix, or the tail) at a time, so that a caller
    // can run other sequences' calls between the steps (the server advances a long prefill
    // window by window between decode steps). Call with start = 0, then with each returned
    // value until it returns ids.size(). The steps together are exactly forward(seq, ids,
    // opts), provided `seq` takes no other call in between and `ids` and `opts` stay the
    // same. Throws like forward(); the checks run at start = 0, so a foreseeable failure
    // leaves `seq` unchanged.
    int64_t forward_step(Sequence& seq, const std::vector<int32_t>& ids, int64_t start,
                         const ForwardOptions& opts);
    // One token per sequence (ids[b] for seqs[b]), B = seqs.size() in [1, W] distinct
    // sequences, in one step. Logits (opts.logits kLast or kAll) come as B rows, row b for
    // seqs[b]. Equals B one-token forward() calls up to the GEMMs' summation order.
    void decode(const std::vector<Sequence*>& seqs, const std::vector<int32_t>& ids,
                const ForwardOptions& opts);

    // Test hook: called with the layer index before each layer of every call (failure-policy
    // tests throw from it on one rank). Empty = none.
    void set_layer_hook(std::function<void(int64_t layer)> hook) { layer_hook_ = std::move(hook); }

    const ModelConfig& config() const { return config_; }
    const ModelOptions& options() const { return options_; }
    const ModelWeights& weights() const { return weights_; }
    // The retriever of the memory layers (null for a model without memory layers).
    const MemoryRetriever* retriever() const { return retriever_.get(); }
    // Memory-attention statistics of this rank since construction (or reset_stats()).
    const MemoryAttentionStats& memory_stats() const;
    void reset_stats();

    // Benchmarks (fotrt bench): gives `seq` a memory of `tokens` random entries per memory
    // layer, in blocks of W placed as a prefix would place them (block b on mp rank b mod mp),
    // without running the model; the local caches are left empty and the sequence has a past,
    // so the next call of up to W tokens attends to exactly that memory. Values are N(0, 1)
    // from `seed` (the same on every rank of a group, so ranks agree on nothing but shapes).
    // Collective in the sense of new_sequence(): every rank of the group calls it.
    void fill_memory(Sequence& seq, int64_t tokens, uint64_t seed);
    int64_t vocab_begin() const { return weights_.vocab_begin; }
    int64_t vocab_rows() const { return weights_.vocab_rows; }

  private:
    // One sequence's share of a step: T tokens at rows [row, row + T) of the scratch.
    struct Segment {
        Sequence* seq = nullptr;
        const int32_t* ids = nullptr;
        int64_t T = 0;
        int64_t row = 0;
        bool use_cache = true;  // false: a prefix window of a sequence without a past
    };

    void check_ids(const int32_t* ids, int64_t n) const;
    // The steps of one window (or one batched decode step), in the order the paper runs them.
    void run_step(const std::vector<Segment>& segs, int64_t rows, int64_t row0,
                  const ForwardOptions& opts);
    void flush_into_memory(const Segment& seg);
    // The residual stream x between layers: kAdded (x is complete), kPending (x still lacks
    // the previous layer's MLP output, in proj_), kNormed (x is complete and xn already holds
    // this layer's first RMSNorm of it).
    enum class Residual { kAdded, kPending, kNormed };
    // Runs layer l on x given `in`; returns the state it leaves. defer_add: this layer's MLP
    // output may be left for the next layer (kPending or kNormed) instead of added to x.
    Residual layer(int64_t l, const std::vector<Segment>& segs, int64_t rows, Residual in,
                   bool defer_add);
    // The dtype of the layer GEMMs' inputs: Backend::gemm_input_dtype of the layer weights
    // (f32 when their dtypes differ); (re)allocates the buffers that hold them.
    DType layer_gemm_input_dtype();
    void attention(int64_t l, const Segment& seg);
    void append_window_block(const Segment& seg);
    // Runs body, as one recorded graph piece of the step when `graphs` and the backend
    // records (Backend::graph_begin); again as ordinary ops if the recording fails.
    void run_piece(bool graphs, int64_t rows, int64_t piece, const std::function<void()>& body);
    // The final norm and the logits rows the call asked for, for run_step to deliver to
    // opts.on_logits after the step's device work; *first_row = the index of their first row
    // within the step (left alone, and the view empty, when none are asked for). on_hidden
    // gets the final norm here.
    TensorView lm_head(const std::vector<Segment>& segs, int64_t rows, int64_t row0,
                       const ForwardOptions& opts, int64_t* first_row);
    // Appends rows [0, len) of the raw key/value caches of every memory layer as the next
    // memory block (on the rank that owns it) and advances the block counters.
    void append_block(Sequence& seq, int64_t len);

    ModelConfig config_;
    ModelWeights weights_;
    Backend& backend_;
    parallel::Communicator& tp_;
    parallel::Communicator& mp_;
    ModelOptions options_;
    int64_t W_, H_, D_, C_;
    SequenceShape seq_shape_;
    std::unique_ptr<MemoryRetriever> retriever_;
    std::function<void(int64_t)> layer_hook_;
    // Scratch for one window of up to W rows.
    Buffer x_, xn_, q_, k_, v_, attn_, proj_, gate_, up_, part_, logits_;
    // GEMM inputs written in gin_ by their producers when gin_ is not f32 (then xn_ and gate_
    // take these roles): the normed rows and the SiLU product. attn_ is always in gin_.
    Buffer xin_, act_;
    DType gin_ = DType::kF32;
    DType layer_wdtype_ = DType::kF32;  // the dtype shared by every layer GEMM weight
    bool layer_wuniform_ = false;
};

}  // namespace fot
