// Sequence: the state of one document in a LongLlama model, on this rank.
//
// It holds what the reference keeps between model calls for one input: the local key/value
// caches of every layer, this rank's shard of the FoT memory (with the global position of
// every entry), the window/block counters and the capacity accounting. The model keeps only
// weights and per-call scratch, so several sequences can live side by side (a server's
// sessions, a batch of documents decoded together), each with its own memory capacity.
//
// Made by LongLlama::new_sequence(); usable only with the model that made it (checked). All
// ranks of a tp x mp group must create and feed their sequences in the same order: a
// sequence is sharded across the group like the model is.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/backend/backend.h"
#include "runtime/core/tensor.h"
#include "runtime/memory/memory_store.h"
#include "runtime/memory/retriever.h"

namespace fot {

class LongLlama;

// The sizes a sequence is built for (LongLlama fills it from its config and options).
struct SequenceShape {
    int64_t layers = 0;
    std::vector<int64_t> mem_slot;  // layer -> memory slot, -1 for non-memory layers
    int64_t heads = 0;              // heads on this rank
    int64_t head_dim = 0;
    int64_t window = 0;               // W = max_position_embeddings
    int64_t last_context_length = 0;  // lcl
    DType cache_dtype = DType::kF32;  // local k_rot / v caches
    DType mem_dtype = DType::kBF16;
    int64_t mp_size = 1, mp_rank = 0;
};

class Sequence {
  public:
    Sequence(Sequence&&) noexcept = default;
    Sequence(const Sequence&) = delete;
    Sequence& operator=(const Sequence&) = delete;
    Sequence& operator=(Sequence&&) = delete;

    // Forgets memory and local caches: the next call starts a new document.
    void reset();
    // Becomes an exact copy of `src` (made by the same model): memory, local caches,
    // counters. Later calls on either sequence do not affect the other, and this one
    // continues exactly as `src` would. Throws when the retriever keeps a per-sequence index
    // (it cannot be copied yet).
    void copy_from(const Sequence& src);

    // Memory tokens the reference would hold per memory layer (all mp ranks together).
    int64_t memory_tokens() const { return mem_tokens_; }
    // Memory tokens on this rank (per memory layer).
    int64_t memory_tokens_local() const;
    // Entries in the local cache of `layer`.
    int64_t local_tokens(int64_t layer) const { return local_[layer].len; }
    // Absolute position the next token gets.
    int64_t next_position() const { return next_pos_; }
    // Whether a model call has run since creation or reset().
    bool has_past() const { return has_past_; }
    // Memory tokens that feeding `n` more tokens in one call would add (all ranks).
    int64_t memory_growth_for(int64_t n) const;
    // Throws fot::Error (with the fix: --mem-capacity or --mp) when feeding `n` more tokens in
    // one call would overflow this sequence's memory capacity.
    void check_memory_fits(int64_t n) const;
    // Per-rank memory capacity in tokens (0 = grows on demand).
    int64_t memory_capacity_tokens() const { return memory_.capacity_tokens(); }
    const MemoryStore& memory() const { return memory_; }
    // The retriever's state for this sequence (MemoryRetriever::make_index; may be null).
    RetrieverIndex* retriever_index() const { return index_.get(); }
    // Bytes this sequence holds on its device: local caches and memory arenas.
    int64_t allocated_bytes() const;

  private:
    friend class LongLlama;

    struct LocalCache {
        Buffer k_rot;  // [H_r, W, D] f32 (bf16 in kFast), rotated at slot index
        Buffer v;      // [H_r, W, D] f32 (bf16 in kFast)
        Buffer k_raw;  // [W, H_r * D] f32 (memory layers: flushed into memory)
        Buffer v_raw;  // [W, H_r * D] f32 (memory layers)
        int64_t len = 0;
    };

    Sequence(const LongLlama* owner, Backend& backend, SequenceShape shape,
             int64_t mem_capacity_tokens, std::unique_ptr<RetrieverIndex> index);

    // Whether this rank owns the next memory block (block b lives on mp rank b mod mp, as
    // World::memory_block_owner says in the mp group's terms).
    bool owns_next_block() const { return mem_blocks_ % shape_.mp_size == shape_.mp_rank; }

    const LongLlama* owner_;
    Backend* backend_;
    SequenceShape shape_;
    MemoryStore memory_;
    std::unique_ptr<RetrieverIndex> index_;
    std::vector<LocalCache> local_;
    bool has_past_ = false;
    int64_t next_pos_ = 0;
    int64_t mem_tokens_ = 0;  // global memory size per memory layer
    int64_t mem_blocks_ = 0;  // blocks placed so far
};

}  // namespace fot
