#include "runtime/model/long_llama.h"

#include <algorithm>
#include <cmath>

#include "runtime/core/status.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace fot {

namespace {
TensorView rows_view(const Buffer& b, int64_t rows) {
    return first_rows(b.view(), rows);
}

// Fault injection for failure-policy tests: FOT_INJECT_FAULT="RANK:LAYER" makes the process
// whose world rank is RANK throw when it reaches layer LAYER of a forward (the others are
// then blocked in a collective and must be brought down by the failure policy).
struct InjectedFault {
    int rank = -1;
    int64_t layer = -1;
};
InjectedFault injected_fault() {
    InjectedFault f;
    if (const char* e = std::getenv("FOT_INJECT_FAULT")) {
        if (std::sscanf(e, "%d:%ld", &f.rank, &f.layer) != 2) f = {};
    }
    return f;
}
}  // namespace

LongLlama::LongLlama(const ModelConfig& config, ModelWeights weights, Backend& backend,
                     parallel::Communicator& tp, parallel::Communicator& mp, ModelOptions options)
    : config_(config),
      weights_(std::move(weights)),
      backend_(backend),
      tp_(tp),
      mp_(mp),
      options_(options),
      W_(config.max_position_embeddings),
      H_(weights_.heads),
      D_(config.head_dim()),
      C_(config.hidden_size),
      memory_(backend, static_cast<int64_t>(config.mem_layers.size()), weights_.heads,
              config.head_dim(), options.mem_dtype, options.mem_capacity_tokens),
      mem_scratch_(
          backend, weights_.heads, config.head_dim(), config.max_position_embeddings,
          config.mem_layers.empty() ? 1 : mp.size(),
          (options.retrieval == Retrieval::kTopK && !config.mem_layers.empty()) ? options.k : 0) {
    FOT_CHECK(options_.last_context_length >= 1 && options_.last_context_length <= W_,
              "last_context_length=", options_.last_context_length,
              " must be in [1, max_position_embeddings=", W_, "]");
    FOT_CHECK(options_.retrieval == Retrieval::kDense || options_.k >= 1,
              "top-k retrieval needs k >= 1 (got ", options_.k, ")");
    mem_slot_.assign(config_.num_hidden_layers, -1);
    for (size_t i = 0; i < config_.mem_layers.size(); ++i) mem_slot_[config_.mem_layers[i]] = i;

    const int64_t HD = H_ * D_;
    // kFast: bf16 local caches (scatter_heads rounds to nearest even on the way in).
    const DType cache_dtype = options_.precision == Precision::kFast ? DType::kBF16 : DType::kF32;
    local_.resize(config_.num_hidden_layers);
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
        local_[l].k_rot = backend_.alloc(cache_dtype, {H_, W_, D_});
        local_[l].v = backend_.alloc(cache_dtype, {H_, W_, D_});
        if (mem_slot_[l] >= 0) {
            local_[l].k_raw = backend_.alloc(DType::kF32, {W_, HD});
            local_[l].v_raw = backend_.alloc(DType::kF32, {W_, HD});
        }
    }
    x_ = backend_.alloc(DType::kF32, {W_, C_});
    xn_ = backend_.alloc(DType::kF32, {W_, C_});
    q_ = backend_.alloc(DType::kF32, {W_, HD});
    k_ = backend_.alloc(DType::kF32, {W_, HD});
    v_ = backend_.alloc(DType::kF32, {W_, HD});
    attn_ = backend_.alloc(DType::kF32, {W_, HD});
    proj_ = backend_.alloc(DType::kF32, {W_, C_});
    gate_ = backend_.alloc(DType::kF32, {W_, weights_.intermediate});
    up_ = backend_.alloc(DType::kF32, {W_, weights_.intermediate});
    part_ = backend_.alloc(DType::kF32, {H_ * W_ * (D_ + 2)});
}

void LongLlama::reset() {
    memory_.clear();
    for (auto& lc : local_) lc.len = 0;
    has_past_ = false;
    next_pos_ = 0;
    mem_tokens_ = 0;
    mem_blocks_ = 0;
}

int64_t LongLlama::memory_tokens_local() const {
    return memory_.num_layers() > 0 ? memory_.size(0) : 0;
}

int64_t LongLlama::memory_growth_for(int64_t n) const {
    if (config_.mem_layers.empty() || n <= 0) return 0;
    const int64_t lcl = options_.last_context_length;
    const int64_t P = std::max<int64_t>(n - lcl, 0);
    if (!has_past_) return P;
    // With a past every window goes through the local cache: count the flushes.
    int64_t grow = 0, len = local_[0].len;
    auto feed = [&](int64_t T) {
        if (len + T > W_) {
            grow += len;
            len = 0;
        }
        len += T;
    };
    for (int64_t s = 0; s < P; s += W_) feed(std::min(W_, P - s));
    feed(n - P);
    return grow;
}

void LongLlama::check_memory_fits(int64_t n) const {
    const int64_t cap = options_.mem_capacity_tokens;
    if (cap <= 0 || config_.mem_layers.empty()) return;
    const int64_t need = mem_tokens_ + memory_growth_for(n);
    // Blocks are at most W tokens; with mp ranks each holds about need / mp.
    const int64_t mp = mp_.size();
    const int64_t per_rank = (need + mp - 1) / mp + (mp > 1 ? W_ : 0);
    if (need > cap * mp || (mp == 1 && need > cap)) {
        const int64_t mp_needed = (need + cap - 1) / cap;
        FOT_THROW("input does not fit in memory: it needs ", need,
                  " memory tokens per memory layer but the capacity is ", cap,
                  " tokens per rank x ", mp, " memory-parallel rank(s) = ", cap * mp,
                  " tokens; raise --mem-capacity or run with --mp ", mp_needed, " or more (about ",
                  per_rank, " tokens per rank now)");
    }
}

void LongLlama::forward(const std::vector<int32_t>& ids, const ForwardOptions& opts) {
    const int64_t N = static_cast<int64_t>(ids.size());
    FOT_CHECK(N > 0, "empty input: at least one token id is needed");
    for (int64_t i = 0; i < N; ++i) {
        FOT_CHECK(ids[i] >= 0 && ids[i] < config_.vocab_size, "token id ", ids[i], " at index ", i,
                  " is out of the vocabulary [0, ", config_.vocab_size, ")");
    }
    check_memory_fits(N);

    const int64_t lcl = options_.last_context_length;
    const int64_t P = std::max<int64_t>(N - lcl, 0);
    const bool prefix_use_cache = has_past_;
    if (!config_.mem_layers.empty()) {
        const int64_t growth = memory_growth_for(N);
        const int64_t mp = mp_.size();
        memory_.reserve(memory_tokens_local() + (growth + mp - 1) / mp + (mp > 1 ? W_ : 0));
    }
    for (int64_t s = 0; s < P; s += W_) {
        const int64_t e = std::min(s + W_, P);
        ForwardOptions wopts = opts;
        if (opts.logits == LogitsRows::kLast) wopts.logits = LogitsRows::kNone;
        run_window(ids.data() + s, e - s, s, prefix_use_cache, wopts);
    }
    run_window(ids.data() + P, N - P, P, /*use_cache=*/true, opts);
    has_past_ = true;
}

void LongLlama::run_window(const int32_t* ids, int64_t T, int64_t row0, bool use_cache,
                           const ForwardOptions& opts) {
    FOT_ASSERT(T >= 1 && T <= W_);
    const int64_t L = config_.num_hidden_layers;
    const float eps = static_cast<float>(config_.rms_norm_eps);
    const bool no_past = !has_past_;
    // Memory-block placement for this window (same for every memory layer).
    const bool flush = !no_past && local_[0].len + T > W_;
    const int64_t flush_len = flush ? local_[0].len : 0;
    const bool window_block = no_past && !use_cache;  // mode A: the window itself enters memory
    // Block b lives on mp rank b mod mp (World::memory_block_owner, in the mp group's terms).
    const bool my_block = (mem_blocks_ % mp_.size()) == mp_.rank();

    TensorView x = rows_view(x_, T), xn = rows_view(xn_, T), proj = rows_view(proj_, T);

    backend_.embedding(x, ids, weights_.embed.view(), weights_.vocab_begin);
    if (tp_.size() > 1) tp_.all_reduce_sum(x, backend_.stream());
    if (opts.on_hidden) opts.on_hidden(0, row0, x);

    // Memory layers see flushed entries before attending (mode B).
    if (flush && !config_.mem_layers.empty()) {
        if (my_block) {
            for (int64_t l = 0; l < L; ++l) {
                if (mem_slot_[l] < 0) continue;
                memory_.append(mem_slot_[l], rows_view(local_[l].k_raw, flush_len),
                               rows_view(local_[l].v_raw, flush_len), mem_tokens_);
            }
        }
        mem_tokens_ += flush_len;
        ++mem_blocks_;
    }
    if (flush) {
        for (auto& lc : local_) lc.len = 0;
    }

    static const InjectedFault fault = injected_fault();
    for (int64_t l = 0; l < L; ++l) {
        FOT_CHECK(!(fault.rank == options_.world_rank && fault.layer == l),
                  "injected fault (FOT_INJECT_FAULT) at layer ", l, " of a forward");
        const LayerWeights& w = weights_.layers[l];
        // ---- attention block ----
        backend_.rmsnorm(xn, x, w.ln_in.view(), eps);
        backend_.matmul(rows_view(q_, T), xn, w.wq.view());
        backend_.matmul(rows_view(k_, T), xn, w.wk.view());
        backend_.matmul(rows_view(v_, T), xn, w.wv.view());
        attention(l, T);
        backend_.matmul(proj, rows_view(attn_, T), w.wo.view());
        if (tp_.size() > 1) tp_.all_reduce_sum(proj, backend_.stream());
        backend_.add(x, x, proj);
        // ---- MLP block ----
        backend_.rmsnorm(xn, x, w.ln_post.view(), eps);
        TensorView gate = rows_view(gate_, T), up = rows_view(up_, T);
        backend_.matmul(gate, xn, w.w_gate.view());
        backend_.matmul(up, xn, w.w_up.view());
        backend_.silu_mul(gate, gate, up);
        backend_.matmul(proj, gate, w.w_down.view());
        if (tp_.size() > 1) tp_.all_reduce_sum(proj, backend_.stream());
        backend_.add(x, x, proj);
        if (opts.on_hidden) opts.on_hidden(l + 1, row0, x);
    }

    // Mode A: after attending, the window's raw keys and values become one memory block.
    if (window_block && !config_.mem_layers.empty()) {
        if (my_block) {
            for (int64_t l = 0; l < L; ++l) {
                if (mem_slot_[l] < 0) continue;
                memory_.append(mem_slot_[l], rows_view(local_[l].k_raw, T),
                               rows_view(local_[l].v_raw, T), mem_tokens_);
            }
        }
        mem_tokens_ += T;
        ++mem_blocks_;
    }
    for (auto& lc : local_) lc.len = use_cache ? lc.len + T : 0;
    next_pos_ += T;

    // ---- final norm + lm_head for the rows that need logits ----
    if (opts.on_hidden) {
        backend_.rmsnorm(xn, x, weights_.norm.view(), eps);
        opts.on_hidden(L + 1, row0, xn);
    }
    if (opts.logits == LogitsRows::kNone || !opts.on_logits) return;
    int64_t first = 0, rows = T;
    if (opts.logits == LogitsRows::kLast) {
        first = T - 1;
        rows = 1;
    }
    if (logits_.empty() || logits_.shape()[0] < rows) {
        logits_ = backend_.alloc(DType::kF32, {rows, weights_.vocab_rows});
    }
    TensorView xs = x;
    xs.data = static_cast<float*>(x.data) + first * C_;
    xs.shape[0] = rows;
    TensorView xsn = rows_view(xn_, rows);
    backend_.rmsnorm(xsn, xs, weights_.norm.view(), eps);
    TensorView lg = rows_view(logits_, rows);
    backend_.matmul(lg, xsn, weights_.lm_head.view());
    opts.on_logits(row0 + first, lg);
}

void LongLlama::attention(int64_t layer, int64_t T) {
    LocalCache& lc = local_[layer];
    const int64_t slot = mem_slot_[layer];
    const int64_t at = lc.len;  // first slot of the new tokens
    FOT_ASSERT(at + T <= W_);
    TensorView q = rows_view(q_, T), k = rows_view(k_, T), v = rows_view(v_, T);
    const float theta = static_cast<float>(config_.rope_theta);

    // Raw keys/values (memory layers) are kept for the memory, then keys rotate at their slot.
    if (slot >= 0) {
        backend_.copy_rows(lc.k_raw.view(), at, k, T);
        backend_.copy_rows(lc.v_raw.view(), at, v, T);
    }
    const bool rotate = config_.mem_positionals || slot < 0;
    if (rotate) {
        backend_.rope(q, H_, D_, at, theta);
        backend_.rope(k, H_, D_, at, theta);
    }
    backend_.scatter_heads(lc.k_rot.view(), at, k);
    backend_.scatter_heads(lc.v.view(), at, v);

    const float scale = 1.0f / std::sqrt(static_cast<float>(D_));
    TensorView part = reshape(part_.view(), {H_, T, D_ + 2});
    backend_.attn_partial_init(part);
    const bool with_memory = slot >= 0 && mem_tokens_ > 0;
    // Local causal part: query t (slot at + t) sees slots [0, at + t]. With a distributed
    // memory only mp rank 0 folds it in, so the merge counts it once.
    if (!with_memory || mp_.rank() == 0) {
        backend_.attn_accumulate(part, q, lc.k_rot.view(), lc.v.view(), at + T, scale, at);
    }
    if (with_memory && options_.retrieval == Retrieval::kTopK) {
        memory_attention_topk(backend_, mp_, part, q, memory_, slot, scale, mem_scratch_,
                              &mem_stats_);
    } else if (with_memory) {
        memory_attention_dense(backend_, mp_, part, q, memory_, slot, scale, mem_scratch_,
                               &mem_stats_);
    }
    backend_.attn_partial_finalize(rows_view(attn_, T), part);
}

}  // namespace fot
