#include "runtime/model/sequence.h"

#include <algorithm>

#include "runtime/core/status.h"

namespace fot {

Sequence::Sequence(const LongLlama* owner, Backend& backend, SequenceShape shape,
                   int64_t mem_capacity_tokens, std::unique_ptr<RetrieverIndex> index)
    : owner_(owner),
      backend_(&backend),
      shape_(std::move(shape)),
      memory_(backend,
              std::count_if(shape_.mem_slot.begin(), shape_.mem_slot.end(),
                            [](int64_t s) { return s >= 0; }),
              shape_.heads, shape_.head_dim, shape_.mem_dtype, mem_capacity_tokens),
      index_(std::move(index)) {
    const int64_t H = shape_.heads, W = shape_.window, D = shape_.head_dim;
    local_.resize(shape_.layers);
    for (int64_t l = 0; l < shape_.layers; ++l) {
        local_[l].k_rot = backend.alloc(shape_.cache_dtype, {H, W, D});
        local_[l].v = backend.alloc(shape_.cache_dtype, {H, W, D});
        if (shape_.mem_slot[l] >= 0) {
            local_[l].k_raw = backend.alloc(DType::kF32, {W, H * D});
            local_[l].v_raw = backend.alloc(DType::kF32, {W, H * D});
        }
    }
}

void Sequence::reset() {
    memory_.clear();
    for (auto& lc : local_) lc.len = 0;
    has_past_ = false;
    next_pos_ = 0;
    mem_tokens_ = 0;
    mem_blocks_ = 0;
}

void Sequence::copy_from(const Sequence& src) {
    FOT_CHECK(src.owner_ == owner_, "a sequence copies only a sequence of the same model");
    FOT_CHECK(index_ == nullptr && src.index_ == nullptr,
              "this retriever keeps a per-sequence index, which cannot be copied");
    if (&src == this) return;
    memory_.copy_from(src.memory_);
    Backend& be = *backend_;
    for (size_t l = 0; l < local_.size(); ++l) {
        auto copy = [&](Buffer& dst, const Buffer& from) {
            if (from.empty()) return;
            const auto& sh = from.shape();
            const int64_t width = sh.back();
            const int64_t rows = static_cast<int64_t>(from.numel()) / width;
            be.copy_rows(reshape(dst.view(), {rows, width}), 0, reshape(from.view(), {rows, width}),
                         rows);
        };
        copy(local_[l].k_rot, src.local_[l].k_rot);
        copy(local_[l].v, src.local_[l].v);
        copy(local_[l].k_raw, src.local_[l].k_raw);
        copy(local_[l].v_raw, src.local_[l].v_raw);
        local_[l].len = src.local_[l].len;
    }
    has_past_ = src.has_past_;
    next_pos_ = src.next_pos_;
    mem_tokens_ = src.mem_tokens_;
    mem_blocks_ = src.mem_blocks_;
}

int64_t Sequence::memory_tokens_local() const {
    return memory_.num_layers() > 0 ? memory_.size(0) : 0;
}

int64_t Sequence::allocated_bytes() const {
    int64_t b = memory_.allocated_bytes();
    for (const auto& lc : local_) {
        b += static_cast<int64_t>(lc.k_rot.nbytes() + lc.v.nbytes() + lc.k_raw.nbytes() +
                                  lc.v_raw.nbytes());
    }
    return b;
}

int64_t Sequence::memory_growth_for(int64_t n) const {
    if (memory_.num_layers() == 0 || n <= 0) return 0;
    const int64_t W = shape_.window;
    const int64_t P = std::max<int64_t>(n - shape_.last_context_length, 0);
    if (!has_past_) return P;
    // With a past every window goes through the local cache: count the flushes.
    int64_t grow = 0, len = local_[0].len;
    auto feed = [&](int64_t T) {
        if (len + T > W) {
            grow += len;
            len = 0;
        }
        len += T;
    };
    for (int64_t s = 0; s < P; s += W) feed(std::min(W, P - s));
    feed(n - P);
    return grow;
}

void Sequence::check_memory_fits(int64_t n) const {
    const int64_t cap = memory_.capacity_tokens();
    if (cap <= 0 || memory_.num_layers() == 0) return;
    const int64_t need = mem_tokens_ + memory_growth_for(n);
    // Blocks are at most W tokens; with mp ranks each holds about need / mp.
    const int64_t mp = shape_.mp_size;
    const int64_t per_rank = (need + mp - 1) / mp + (mp > 1 ? shape_.window : 0);
    if (need > cap * mp || (mp == 1 && need > cap)) {
        const int64_t mp_needed = (need + cap - 1) / cap;
        FOT_THROW("input does not fit in memory: it needs ", need,
                  " memory tokens per memory layer but the capacity is ", cap,
                  " tokens per rank x ", mp, " memory-parallel rank(s) = ", cap * mp,
                  " tokens; raise --mem-capacity or run with --mp ", mp_needed, " or more (about ",
                  per_rank, " tokens per rank now)");
    }
}

}  // namespace fot
