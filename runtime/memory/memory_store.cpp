#include "runtime/memory/memory_store.h"

#include <algorithm>
#include <vector>

#include "runtime/core/status.h"

namespace fot {

MemoryStore::MemoryStore(Backend& backend, int64_t num_layers, int64_t heads, int64_t head_dim,
                         DType dtype, int64_t capacity_tokens)
    : backend_(backend),
      heads_(heads),
      head_dim_(head_dim),
      dtype_(dtype),
      cap_limit_(capacity_tokens) {
    FOT_CHECK(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16,
              "memory dtype must be f32, bf16 or f16, not ", dtype_name(dtype));
    FOT_CHECK(capacity_tokens >= 0, "memory capacity must be >= 0 tokens");
    keys_.resize(num_layers);
    values_.resize(num_layers);
    positions_.resize(num_layers);
    sizes_.assign(num_layers, 0);
    blocks_.resize(num_layers);
    // A one-row arena from the start: an empty shard (an mp rank that owns no block yet)
    // still has well-formed [H, cap, D] views for the attention ops.
    for (int64_t s = 0; s < num_layers; ++s) grow(s, 1);
}

int64_t MemoryStore::bytes_per_token_per_layer() const {
    return 2 * heads_ * head_dim_ * static_cast<int64_t>(dtype_size(dtype_));
}

int64_t MemoryStore::allocated_bytes() const {
    int64_t b = 0;
    for (size_t i = 0; i < keys_.size(); ++i) {
        b += static_cast<int64_t>(keys_[i].nbytes() + values_[i].nbytes());
    }
    return b;
}

int64_t MemoryStore::used_bytes() const {
    int64_t n = 0;
    for (int64_t s : sizes_) n += s;
    return n * bytes_per_token_per_layer();
}

void MemoryStore::reserve(int64_t tokens) {
    if (cap_limit_ > 0) tokens = std::min(tokens, cap_limit_);
    for (int64_t s = 0; s < num_layers(); ++s) {
        const int64_t cap = keys_[s].empty() ? 0 : keys_[s].shape()[1];
        if (tokens > cap) grow(s, tokens);
    }
}

void MemoryStore::grow(int64_t slot, int64_t min_rows) {
    const int64_t old_cap = keys_[slot].empty() ? 0 : keys_[slot].shape()[1];
    int64_t cap = std::max<int64_t>(min_rows, old_cap + old_cap / 2);
    if (cap_limit_ > 0) cap = std::min(cap, cap_limit_);
    FOT_ASSERT(cap >= min_rows);
    Buffer nk = backend_.alloc(dtype_, {heads_, cap, head_dim_});
    Buffer nv = backend_.alloc(dtype_, {heads_, cap, head_dim_});
    const int64_t used = sizes_[slot];
    if (used > 0) {
        // Per head: rows [0, used) move from head stride old_cap to head stride cap.
        const TensorView dk = reshape(nk.view(), {heads_ * cap, head_dim_});
        const TensorView dv = reshape(nv.view(), {heads_ * cap, head_dim_});
        const TensorView sk = reshape(keys_[slot].view(), {heads_ * old_cap, head_dim_});
        const TensorView sv = reshape(values_[slot].view(), {heads_ * old_cap, head_dim_});
        for (int64_t h = 0; h < heads_; ++h) {
            backend_.copy_rows(dk, h * cap, slice_rows(sk, h * old_cap, used), used);
            backend_.copy_rows(dv, h * cap, slice_rows(sv, h * old_cap, used), used);
        }
    }
    Buffer np = backend_.alloc(DType::kI64, {cap});
    if (used > 0) backend_.copy_rows(np.view(), 0, positions_[slot].view(), used);
    keys_[slot] = std::move(nk);
    values_[slot] = std::move(nv);
    positions_[slot] = std::move(np);
}

void MemoryStore::append(int64_t slot, TensorView k, TensorView v, int64_t global_begin) {
    FOT_ASSERT(slot >= 0 && slot < num_layers());
    const int64_t T = k.shape[0];
    if (T == 0) return;
    const int64_t need = sizes_[slot] + T;
    if (cap_limit_ > 0 && need > cap_limit_) {
        FOT_THROW("memory capacity exceeded: this rank holds ", sizes_[slot],
                  " memory tokens and a block of ", T, " more does not fit in the capacity of ",
                  cap_limit_,
                  " tokens per rank (raise --mem-capacity, or add memory-parallel "
                  "ranks with --mp)");
    }
    const int64_t cap = keys_[slot].empty() ? 0 : keys_[slot].shape()[1];
    if (need > cap) grow(slot, need);
    backend_.scatter_heads(keys_[slot].view(), sizes_[slot], k);
    backend_.scatter_heads(values_[slot].view(), sizes_[slot], v);
    std::vector<int64_t> pos(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) pos[i] = global_begin + i;
    backend_.upload(slice_rows(positions_[slot].view(), sizes_[slot], T), pos.data(),
                    pos.size() * sizeof(int64_t));
    blocks_[slot].push_back({global_begin, sizes_[slot], T});
    sizes_[slot] = need;
}

void MemoryStore::clear() {
    std::fill(sizes_.begin(), sizes_.end(), 0);
    for (auto& b : blocks_) b.clear();
}

void MemoryStore::copy_from(const MemoryStore& src) {
    FOT_CHECK(&src.backend_ == &backend_ && src.num_layers() == num_layers() &&
                  src.heads_ == heads_ && src.head_dim_ == head_dim_ && src.dtype_ == dtype_,
              "a memory store copies only a store of the same shape");
    for (int64_t s = 0; s < num_layers(); ++s) {
        const int64_t cap = src.keys_[s].shape()[1];
        if (keys_[s].shape()[1] != cap) {
            keys_[s] = backend_.alloc(dtype_, {heads_, cap, head_dim_});
            values_[s] = backend_.alloc(dtype_, {heads_, cap, head_dim_});
            positions_[s] = backend_.alloc(DType::kI64, {cap});
        }
        // Whole arenas: rows past sizes_ are never read, so copying them costs only time.
        const int64_t rows = heads_ * cap;
        backend_.copy_rows(reshape(keys_[s].view(), {rows, head_dim_}), 0,
                           reshape(src.keys_[s].view(), {rows, head_dim_}), rows);
        backend_.copy_rows(reshape(values_[s].view(), {rows, head_dim_}), 0,
                           reshape(src.values_[s].view(), {rows, head_dim_}), rows);
        backend_.copy_rows(positions_[s].view(), 0, src.positions_[s].view(), cap);
    }
    sizes_ = src.sizes_;
    blocks_ = src.blocks_;
}

}  // namespace fot
