// MemoryStore: this rank's shard of the FoT memory of every memory layer.
//
// For each memory layer it holds key and value arenas [H, capacity, D] in the memory dtype
// (bf16 by default: entries are rounded to nearest even when stored, exactly as the
// reference's .to(mem_dtype)). Keys are the raw k_proj outputs (RoPE "as if first" is the
// identity). Entries arrive in blocks (one prefix window or one local-cache flush); each
// block keeps its global memory position, so a memory split over mp ranks (block b on rank
// b mod mp) still knows where every entry sits in the single-rank order.
//
// Capacity: `capacity_tokens` > 0 is a hard per-rank cap (append beyond it throws a
// fot::Error that says how many tokens fit); 0 grows geometrically on demand (amortised
// O(n) copying, never re-concatenation per block). reserve() preallocates.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/backend/backend.h"
#include "runtime/core/tensor.h"

namespace fot {

struct MemoryBlock {
    int64_t global_begin;  // position of its first entry in the single-rank memory order
    int64_t local_begin;   // row of its first entry in this rank's arena
    int64_t length;
};

class MemoryStore {
  public:
    MemoryStore(Backend& backend, int64_t num_layers, int64_t heads, int64_t head_dim, DType dtype,
                int64_t capacity_tokens);

    // Makes room for `tokens` entries per layer without further reallocation.
    void reserve(int64_t tokens);
    // Appends rows [0, T) of k and v ([T, H*D] f32) to memory layer `slot`. `global_begin` is
    // the block's position in the single-rank order. Every layer receives the same blocks.
    void append(int64_t slot, TensorView k, TensorView v, int64_t global_begin);
    // Drops every entry (a new document).
    void clear();
    // Makes this store an exact copy of `src` (same shape and backend): entries, positions,
    // blocks. Forking a document's state (a server session answering several questions).
    void copy_from(const MemoryStore& src);

    // Entries of layer `slot` on this rank.
    int64_t size(int64_t slot) const { return sizes_[slot]; }
    // Key / value arenas [H, capacity, D] of layer `slot`; rows [0, size) are valid.
    TensorView keys(int64_t slot) const { return keys_[slot].view(); }
    TensorView values(int64_t slot) const { return values_[slot].view(); }
    const std::vector<MemoryBlock>& blocks(int64_t slot) const { return blocks_[slot]; }
    // Global memory position of each row of layer `slot` [capacity] (i64, on the device);
    // rows [0, size) are valid. Used to break top-k ties in the single-rank order.
    TensorView positions(int64_t slot) const { return positions_[slot].view(); }

    int64_t num_layers() const { return static_cast<int64_t>(sizes_.size()); }
    int64_t capacity_tokens() const { return cap_limit_; }
    DType dtype() const { return dtype_; }
    // Bytes one token takes in one layer (keys + values).
    int64_t bytes_per_token_per_layer() const;
    // Bytes held by the arenas (allocated, not only used).
    int64_t allocated_bytes() const;
    // Bytes of the valid entries over all layers.
    int64_t used_bytes() const;

  private:
    void grow(int64_t slot, int64_t min_rows);

    Backend& backend_;
    int64_t heads_, head_dim_;
    DType dtype_;
    int64_t cap_limit_;
    std::vector<Buffer> keys_, values_, positions_;
    std::vector<int64_t> sizes_;
    std::vector<std::vector<MemoryBlock>> blocks_;
};

}  // namespace fot
