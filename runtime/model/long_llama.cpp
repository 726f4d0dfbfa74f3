#include "runtime/model/long_llama.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/status.h"

namespace fot {

namespace {
TensorView rows_view(const Buffer& b, int64_t rows) {
    return first_rows(b.view(), rows);
}
TensorView rows_view(const Buffer& b, int64_t begin, int64_t rows) {
    return slice_rows(b.view(), begin, rows);
}
}  // namespace

LongLlama::LongLlama(const ModelConfig& config, ModelWeights weights, Backend& backend,
                     parallel::Communicator& tp, parallel::Communicator& mp, ModelOptions options)
    : config_(config),
      weights_(std::move(weights)),
      backend_(backend),
      tp_(tp),
      mp_(mp),
      options_(std::move(options)),
      W_(config.max_position_embeddings),
      H_(weights_.heads),
      D_(config.head_dim()),
      C_(config.hidden_size) {
    FOT_CHECK(options_.last_context_length >= 1 && options_.last_context_length <= W_,
              "last_context_length=", options_.last_context_length,
              " must be in [1, max_position_embeddings=", W_, "]");
    seq_shape_.layers = config_.num_hidden_layers;
    seq_shape_.mem_slot.assign(config_.num_hidden_layers, -1);
    for (size_t i = 0; i < config_.mem_layers.size(); ++i) {
        seq_shape_.mem_slot[config_.mem_layers[i]] = static_cast<int64_t>(i);
    }
    seq_shape_.heads = H_;
    seq_shape_.head_dim = D_;
    seq_shape_.window = W_;
    seq_shape_.last_context_length = options_.last_context_length;
    // kFast: bf16 local caches (scatter_heads rounds to nearest even on the way in).
    seq_shape_.cache_dtype = options_.precision == Precision::kFast ? DType::kBF16 : DType::kF32;
    seq_shape_.mem_dtype = options_.mem_dtype;
    seq_shape_.mp_size = mp_.size();
    seq_shape_.mp_rank = mp_.rank();

    if (!config_.mem_layers.empty()) {
        RetrieverSpec spec;
        spec.name =
            options_.retriever.empty() ? retrieval_name(options_.retrieval) : options_.retriever;
        spec.k = options_.k;
        retriever_ = make_memory_retriever(spec, backend_, mp_, {H_, D_, W_});
    }

    const int64_t HD = H_ * D_;
    x_ = backend_.alloc(DType::kF32, {W_, C_});
    xn_ = backend_.alloc(DType::kF32, {W_, C_});
    // q|k|v and gate|up back to back, one stride apart like their weights (weights.cpp), so a
    // prefill window's projections can be one batched GEMM each (Backend::matmul_group).
    std::vector<Buffer> qkv = split_rows(backend_.alloc(DType::kF32, {3 * W_, HD}), 3);
    q_ = std::move(qkv[0]);
    k_ = std::move(qkv[1]);
    v_ = std::move(qkv[2]);
    attn_ = backend_.alloc(DType::kF32, {W_, HD});
    proj_ = backend_.alloc(DType::kF32, {W_, C_});
    std::vector<Buffer> gate_up =
        split_rows(backend_.alloc(DType::kF32, {2 * W_, weights_.intermediate}), 2);
    gate_ = std::move(gate_up[0]);
    up_ = std::move(gate_up[1]);
    part_ = backend_.alloc(DType::kF32, {H_ * W_ * (D_ + 2)});
    if (!weights_.layers.empty()) {
        layer_wdtype_ = weights_.layers[0].wq.view().dtype;
        layer_wuniform_ = true;
        for (const LayerWeights& w : weights_.layers) {
            for (const Buffer* b : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) {
                layer_wuniform_ = layer_wuniform_ && b->view().dtype == layer_wdtype_;
            }
        }
    }
}

DType LongLlama::layer_gemm_input_dtype() {
    // Asked per layer call: the backend's precision may change between calls (benchmarks).
    const DType gin = layer_wuniform_ ? backend_.gemm_input_dtype(layer_wdtype_) : DType::kF32;
    if (gin != gin_) {
        gin_ = gin;
        attn_ = backend_.alloc(gin, {W_, H_ * D_});
        xin_ = gin == DType::kF32 ? Buffer() : backend_.alloc(gin, {W_, C_});
        act_ = gin == DType::kF32 ? Buffer() : backend_.alloc(gin, {W_, weights_.intermediate});
    }
    return gin;
}

Sequence LongLlama::new_sequence(int64_t mem_capacity_tokens) const {
    const int64_t cap =
        mem_capacity_tokens < 0 ? options_.mem_capacity_tokens : mem_capacity_tokens;
    return Sequence(this, backend_, seq_shape_, cap,
                    retriever_ ? retriever_->make_index() : nullptr);
}

const MemoryAttentionStats& LongLlama::memory_stats() const {
    static const MemoryAttentionStats none;
    return retriever_ ? retriever_->stats() : none;
}

void LongLlama::reset_stats() {
    if (retriever_) retriever_->reset_stats();
}

void LongLlama::fill_memory(Sequence& seq, int64_t tokens, uint64_t seed) {
    FOT_CHECK(seq.owner_ == this, "this sequence was made by another model");
    FOT_CHECK(tokens >= 0, "fill_memory: negative token count ", tokens);
    seq.reset();
    if (config_.mem_layers.empty() || tokens == 0) {
        seq.has_past_ = tokens > 0;
        return;
    }
    const int64_t mp = mp_.size();
    // As forward() will ask (its reserve adds a window on mp > 1), so no call grows it.
    seq.memory_.reserve((tokens + W_ * mp - 1) / (W_ * mp) * W_ + W_);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> host(static_cast<size_t>(W_ * H_ * D_));
    for (int64_t done = 0; done < tokens;) {
        const int64_t len = std::min(W_, tokens - done);
        // Only the owner's values matter; every rank draws them to keep the streams aligned.
        for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
            if (seq_shape_.mem_slot[l] < 0) continue;
            for (Buffer* b : {&seq.local_[l].k_raw, &seq.local_[l].v_raw}) {
                for (int64_t i = 0; i < len * H_ * D_; ++i) host[i] = nd(rng);
                backend_.upload(rows_view(*b, len), host.data(),
                                static_cast<size_t>(len * H_ * D_) * sizeof(float));
            }
        }
        append_block(seq, len);
        done += len;
    }
    seq.next_pos_ = tokens;
    seq.has_past_ = true;
}

void LongLlama::check_ids(const int32_t* ids, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
        FOT_CHECK(ids[i] >= 0 && ids[i] < config_.vocab_size, "token id ", ids[i], " at index ", i,
                  " is out of the vocabulary [0, ", config_.vocab_size, ")");
    }
}

void LongLlama::forward(Sequence& seq, const std::vector<int32_t>& ids,
                        const ForwardOptions& opts) {
    const int64_t N = static_cast<int64_t>(ids.size());
    for (int64_t s = 0; s < N || s == 0;) s = forward_step(seq, ids, s, opts);
}

int64_t LongLlama::forward_step(Sequence& seq, const std::vector<int32_t>& ids, int64_t start,
                                const ForwardOptions& opts) {
    FOT_CHECK(seq.owner_ == this, "this sequence was made by another model");
    const int64_t N = static_cast<int64_t>(ids.size());
    const int64_t lcl = options_.last_context_length;
    const int64_t P = std::max<int64_t>(N - lcl, 0);
    if (start == 0) {
        FOT_CHECK(N > 0, "empty input: at least one token id is needed");
        check_ids(ids.data(), N);
        seq.check_memory_fits(N);
        if (!config_.mem_layers.empty()) {
            const int64_t growth = seq.memory_growth_for(N);
            const int64_t mp = mp_.size();
            seq.memory_.reserve(seq.memory_tokens_local() + (growth + mp - 1) / mp +
                                (mp > 1 ? W_ : 0));
        }
    }
    FOT_CHECK(start >= 0 && start < N && (start >= P ? start == P : start % W_ == 0),
              "forward_step: ", start, " is not the start of a step of a ", N, "-token call");
    if (start < P) {
        // A prefix window. has_past_ is set only after the tail, so every window of one call
        // sees the same prefix mode, however the steps are spread out.
        const int64_t e = std::min(start + W_, P);
        ForwardOptions wopts = opts;
        if (opts.logits == LogitsRows::kLast) wopts.logits = LogitsRows::kNone;
        run_step({{&seq, ids.data() + start, e - start, 0, seq.has_past_}}, e - start, start,
                 wopts);
        return e;
    }
    run_step({{&seq, ids.data() + P, N - P, 0, true}}, N - P, P, opts);
    seq.has_past_ = true;
    return N;
}

void LongLlama::decode(const std::vector<Sequence*>& seqs, const std::vector<int32_t>& ids,
                       const ForwardOptions& opts) {
    const int64_t B = static_cast<int64_t>(seqs.size());
    FOT_CHECK(B >= 1 && B <= W_, "a decode step takes 1 to ", W_, " sequences, not ", B);
    FOT_CHECK(static_cast<int64_t>(ids.size()) == B,
              "a decode step needs one token id per "
              "sequence (",
              B, " sequences, ", ids.size(), " ids)");
    check_ids(ids.data(), B);
    std::vector<Sequence*> sorted = seqs;
    std::sort(sorted.begin(), sorted.end());
    FOT_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(),
              "a decode step needs distinct sequences");
    for (Sequence* s : seqs) {
        FOT_CHECK(s != nullptr && s->owner_ == this, "this sequence was made by another model");
        s->check_memory_fits(1);
    }
    std::vector<Segment> segs;
    for (int64_t b = 0; b < B; ++b) {
        Sequence& s = *seqs[b];
        if (!config_.mem_layers.empty()) {
            const int64_t mp = mp_.size();
            s.memory_.reserve(s.memory_tokens_local() + (s.memory_growth_for(1) + mp - 1) / mp +
                              (mp > 1 ? W_ : 0));
        }
        segs.push_back({&s, ids.data() + b, 1, b, true});
    }
    run_step(segs, B, 0, opts);
    for (Sequence* s : seqs) s->has_past_ = true;
}

void LongLlama::run_step(const std::vector<Segment>& segs, int64_t rows, int64_t row0,
                         const ForwardOptions& opts) {
    FOT_ASSERT(rows >= 1 && rows <= W_);
    if (opts.before_window) opts.before_window(row0);
    for (const Segment& seg : segs) flush_into_memory(seg);

    // The step's device work runs in pieces of layers (1, 2, 4, then kMaxPieceLayers), each of
    // which a device backend may run as one graph (Backend::graph_begin): a decoded token is
    // then a handful of launches. Small first pieces get the device going while the later
    // ones are recorded. Host work (flushes, block appends, cache lengths, the logits
    // callback) stays outside the pieces, so a piece can be enqueued again as it is when its
    // recording fails. Graphs need what a recording cannot hold to be absent: collectives (tp
    // or mp > 1) and host callbacks between ops (on_hidden, the layer hook).
    constexpr int64_t kMaxPieceLayers = 6;
    const bool graphs = tp_.size() == 1 && mp_.size() == 1 && !opts.on_hidden && !layer_hook_;
    const int64_t L = config_.num_hidden_layers;
    TensorView x = rows_view(x_, rows);
    Residual in = Residual::kAdded;
    TensorView logits;
    int64_t logits_row = -1;  // none asked for
    for (int64_t piece = 0, l0 = 0; l0 < L || piece == 0; ++piece) {
        const int64_t l1 = std::min(L, l0 + std::min(int64_t{1} << piece, kMaxPieceLayers));
        const Residual in0 = in;
        auto body = [&] {
            in = in0;
            if (piece == 0) {
                // Every segment's ids are contiguous in the step's rows.
                for (const Segment& seg : segs) {
                    backend_.embedding(rows_view(x_, seg.row, seg.T), seg.ids,
                                       weights_.embed.view(), weights_.vocab_begin);
                }
                if (tp_.size() > 1) tp_.all_reduce_sum(x, backend_.stream());
                if (opts.on_hidden) opts.on_hidden(0, row0, x);
            }
            // A layer's last residual add waits for the next layer's first RMSNorm (one pass
            // for both), unless a hook wants each layer's output or it is the last layer.
            for (int64_t l = l0; l < l1; ++l) {
                if (layer_hook_) layer_hook_(l);
                const bool defer_add = !opts.on_hidden && l + 1 < L;
                in = layer(l, segs, rows, in, defer_add);
                if (opts.on_hidden) opts.on_hidden(l + 1, row0, x);
            }
            if (l1 == L) logits = lm_head(segs, rows, row0, opts, &logits_row);
        };
        run_piece(graphs, rows, piece, body);
        l0 = l1;
    }

    for (const Segment& seg : segs) {
        append_window_block(seg);
        for (auto& lc : seg.seq->local_) lc.len = seg.use_cache ? lc.len + seg.T : 0;
        seg.seq->next_pos_ += seg.T;
    }
    if (logits_row >= 0) opts.on_logits(row0 + logits_row, logits);
}

void LongLlama::run_piece(bool graphs, int64_t rows, int64_t piece,
                          const std::function<void()>& body) {
    if (graphs && backend_.graph_begin(rows)) {
        try {
            body();
        } catch (...) {
            backend_.graph_abort();
            throw;
        }
        if (backend_.graph_end(piece)) return;
        // Nothing ran (and the backend records no more): the same ops again, as they are. The
        // retriever's statistics count this piece's memory layers twice, once.
    }
    body();
}

// Mode B: a sequence with a past whose local cache cannot take the new tokens flushes all of
// it first; memory layers keep the flushed entries (they attend to them from memory).
void LongLlama::flush_into_memory(const Segment& seg) {
    Sequence& s = *seg.seq;
    if (!s.has_past_ || s.local_[0].len + seg.T <= W_) return;
    if (!config_.mem_layers.empty()) append_block(s, s.local_[0].len);
    for (auto& lc : s.local_) lc.len = 0;
}

// Mode A: a prefix window of a sequence without a past becomes one memory block after it has
// attended to itself.
void LongLlama::append_window_block(const Segment& seg) {
    if (seg.seq->has_past_ || seg.use_cache || config_.mem_layers.empty()) return;
    append_block(*seg.seq, seg.T);
}

void LongLlama::append_block(Sequence& seq, int64_t len) {
    if (seq.owns_next_block()) {
        for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
            const int64_t slot = seq_shape_.mem_slot[l];
            if (slot < 0) continue;
            const int64_t first_row = seq.memory_.size(slot);
            seq.memory_.append(slot, rows_view(seq.local_[l].k_raw, len),
                               rows_view(seq.local_[l].v_raw, len), seq.mem_tokens_);
            retriever_->on_append(seq.index_.get(), seq.memory_, slot, first_row, len);
        }
    }
    seq.mem_tokens_ += len;
    ++seq.mem_blocks_;
}

LongLlama::Residual LongLlama::layer(int64_t l, const std::vector<Segment>& segs, int64_t rows,
                                     Residual in, bool defer_add) {
    const LayerWeights& w = weights_.layers[l];
    const float eps = static_cast<float>(config_.rms_norm_eps);
    // GEMM inputs come out of their producers already in the dtype the GEMM rounds them to.
    const bool lowp = layer_gemm_input_dtype() != DType::kF32;
    TensorView x = rows_view(x_, rows), proj = rows_view(proj_, rows);
    TensorView xn = rows_view(lowp ? xin_ : xn_, rows);
    // Without tensor parallelism nothing stands between a projection back to the residual
    // stream and the add + RMSNorm after it: one op (one GEMV launch in CUDA decode). With it,
    // the projection's all-reduce does.
    const bool one_op = tp_.size() == 1;
    // ---- attention block ----
    if (in == Residual::kPending) {  // the previous layer's MLP residual, fused with this norm
        backend_.add_rmsnorm(xn, x, proj, w.ln_in.view(), eps);
    } else if (in == Residual::kAdded) {
        backend_.rmsnorm(xn, x, w.ln_in.view(), eps);
    }  // else kNormed: the previous layer's down projection wrote xn
    backend_.matmul_group(xn, {{rows_view(q_, rows), w.wq.view()},
                               {rows_view(k_, rows), w.wk.view()},
                               {rows_view(v_, rows), w.wv.view()}});
    for (const Segment& seg : segs) attention(l, seg);
    TensorView attn = rows_view(attn_, rows);
    if (one_op) {
        backend_.matmul_add_rmsnorm(xn, x, proj, attn, w.wo.view(), w.ln_post.view(), eps);
    } else {
        backend_.matmul(proj, attn, w.wo.view());
        tp_.all_reduce_sum(proj, backend_.stream());
        backend_.add_rmsnorm(xn, x, proj, w.ln_post.view(), eps);
    }
    // ---- MLP block ----
    TensorView gate = rows_view(gate_, rows), up = rows_view(up_, rows);
    TensorView act = lowp ? rows_view(act_, rows) : gate;
    backend_.matmul_silu_mul(act, gate, up, xn, w.w_gate.view(), w.w_up.view());
    if (defer_add && one_op) {  // the next layer's first norm, in the same op
        backend_.matmul_add_rmsnorm(xn, x, proj, act, w.w_down.view(),
                                    weights_.layers[l + 1].ln_in.view(), eps);
        return Residual::kNormed;
    }
    backend_.matmul(proj, act, w.w_down.view());
    if (tp_.size() > 1) tp_.all_reduce_sum(proj, backend_.stream());
    if (defer_add) return Residual::kPending;  // the next layer's first norm adds proj
    backend_.add(x, x, proj);
    return Residual::kAdded;
}

void LongLlama::attention(int64_t l, const Segment& seg) {
    Sequence& s = *seg.seq;
    Sequence::LocalCache& lc = s.local_[l];
    const int64_t slot = seq_shape_.mem_slot[l];
    const int64_t T = seg.T;
    const int64_t at = lc.len;  // first slot of the new tokens
    FOT_ASSERT(at + T <= W_);
    TensorView q = rows_view(q_, seg.row, T), k = rows_view(k_, seg.row, T),
               v = rows_view(v_, seg.row, T);
    const float theta = static_cast<float>(config_.rope_theta);

    // Raw keys/values (memory layers) are kept for the memory, then keys rotate at their slot.
    if (slot >= 0) {
        backend_.copy_rows(lc.k_raw.view(), at, k, T);
        backend_.copy_rows(lc.v_raw.view(), at, v, T);
    }
    // RoPE (when rotating) and the local-cache write of k and v: one op (k is not read again).
    const bool rotate = config_.mem_positionals || slot < 0;
    backend_.rope_store_kv(q, k, v, lc.k_rot.view(), lc.v.view(), at, theta, rotate);

    const float scale = 1.0f / std::sqrt(static_cast<float>(D_));
    TensorView part = reshape(part_.view(), {H_, T, D_ + 2});
    const bool with_memory = slot >= 0 && s.mem_tokens_ > 0;
    if (!with_memory) {  // the local window alone: one op (one launch in CUDA decode)
        backend_.attn_one_store(rows_view(attn_, seg.row, T), part, q, lc.k_rot.view(), lc.v.view(),
                                at + T, scale, at);
        return;
    }
    backend_.attn_partial_init(part);
    // Local causal part: query t (slot at + t) sees slots [0, at + t]. With a distributed
    // memory only mp rank 0 folds it in, so the merge counts it once.
    if (!with_memory || mp_.rank() == 0) {
        backend_.attn_accumulate(part, q, lc.k_rot.view(), lc.v.view(), at + T, scale, at);
    }
    if (with_memory) {
        RetrievalRequest r;
        r.part = part;
        r.q = q;
        r.store = &s.memory_;
        r.slot = slot;
        r.scale = scale;
        r.index = s.index_.get();
        retriever_->attend(r);
    }
    backend_.attn_partial_finalize(rows_view(attn_, seg.row, T), part);
}

TensorView LongLlama::lm_head(const std::vector<Segment>& segs, int64_t rows, int64_t row0,
                              const ForwardOptions& opts, int64_t* first_row) {
    const float eps = static_cast<float>(config_.rms_norm_eps);
    TensorView x = rows_view(x_, rows);
    if (opts.on_hidden) {
        TensorView xn = rows_view(xn_, rows);
        backend_.rmsnorm(xn, x, weights_.norm.view(), eps);
        opts.on_hidden(config_.num_hidden_layers + 1, row0, xn);
    }
    if (opts.logits == LogitsRows::kNone || !opts.on_logits) return {};
    // kLast: the last row of each segment. One segment: its last row; a decode step (one
    // token per segment): every row.
    int64_t first = 0, n = rows;
    if (opts.logits == LogitsRows::kLast && segs.size() == 1) {
        first = rows - 1;
        n = 1;
    }
    if (logits_.empty() || logits_.shape()[0] < n) {
        logits_ = backend_.alloc(DType::kF32, {n, weights_.vocab_rows});
    }
    TensorView xsn = rows_view(xn_, n);
    backend_.rmsnorm(xsn, rows_view(x_, first, n), weights_.norm.view(), eps);
    TensorView lg = rows_view(logits_, n);
    backend_.matmul(lg, xsn, weights_.lm_head.view());
    *first_row = first;
    return lg;
}

}  // namespace fot
