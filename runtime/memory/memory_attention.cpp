#include "runtime/memory/memory_attention.h"

#include "runtime/core/status.h"
#include "runtime/core/timer.h"

namespace fot {

MemoryAttentionScratch::MemoryAttentionScratch(Backend& backend, int64_t heads, int64_t head_dim,
                                               int64_t max_T, int64_t mp_size, int64_t kk)
    : k(kk) {
    if (mp_size > 1)
        gathered = backend.alloc(DType::kF32, {mp_size * heads * max_T * (head_dim + 2)});
    if (k > 0) {
        const int64_t n = heads * max_T * k;
        cand_scores = backend.alloc(DType::kF32, {n});
        cand_rows = backend.alloc(DType::kI64, {n});
        cand_pos = backend.alloc(DType::kI64, {n});
        if (mp_size > 1) {
            all_scores = backend.alloc(DType::kF32, {mp_size * n});
            all_pos = backend.alloc(DType::kI64, {mp_size * n});
        }
        thr_score = backend.alloc(DType::kF32, {heads * max_T});
        thr_pos = backend.alloc(DType::kI64, {heads * max_T});
    }
}

void merge_partials(Backend& backend, parallel::Communicator& mp, TensorView part,
                    MemoryAttentionScratch& scratch, MemoryAttentionStats* stats) {
    const int64_t R = mp.size();
    if (R == 1) return;
    Timer timer;
    const int64_t n = part.numel();
    TensorView gathered =
        reshape(scratch.gathered.view(), {R, part.shape[0], part.shape[1], part.shape[2]});
    mp.all_gather(reshape(part, {n}), reshape(gathered, {R * n}), backend.stream());
    if (stats) stats->gathered_bytes += R * n * static_cast<int64_t>(sizeof(float));
    backend.attn_partial_merge(part, gathered);
    if (stats) stats->merge_seconds += timer.seconds();
}

void memory_attention_dense(Backend& backend, parallel::Communicator& mp, TensorView part,
                            TensorView q, const MemoryStore& store, int64_t slot, float scale,
                            MemoryAttentionScratch& scratch, MemoryAttentionStats* stats) {
    Timer timer;
    if (store.size(slot) > 0) {
        backend.attn_accumulate(part, q, store.keys(slot), store.values(slot), store.size(slot),
                                scale, INT64_MAX / 2);
    }
    if (stats) {
        ++stats->steps;
        stats->score_seconds += timer.seconds();
    }
    merge_partials(backend, mp, part, scratch, stats);
}

void memory_attention_topk(Backend& backend, parallel::Communicator& mp, TensorView part,
                           TensorView q, const MemoryStore& store, int64_t slot, float scale,
                           MemoryAttentionScratch& scratch, MemoryAttentionStats* stats) {
    const int64_t K = scratch.k;
    FOT_ASSERT(K > 0);
    const int64_t R = mp.size(), H = part.shape[0], T = part.shape[1];
    TensorView scores = reshape(scratch.cand_scores.view(), {H, T, K});
    TensorView rows = reshape(scratch.cand_rows.view(), {H, T, K});
    TensorView pos = reshape(scratch.cand_pos.view(), {H, T, K});
    Timer timer;
    backend.memory_topk(scores, rows, pos, q, store.keys(slot), store.positions(slot),
                        store.size(slot), scale);
    if (stats) {
        ++stats->steps;
        stats->score_seconds += timer.seconds();
        timer.reset();
    }
    TensorView all_scores = reshape(scores, {1, H, T, K});
    TensorView all_pos = reshape(pos, {1, H, T, K});
    if (R > 1) {
        const int64_t n = H * T * K;
        all_scores = reshape(scratch.all_scores.view(), {R, H, T, K});
        all_pos = reshape(scratch.all_pos.view(), {R, H, T, K});
        mp.all_gather(reshape(scores, {n}), reshape(all_scores, {R * n}), backend.stream());
        mp.all_gather(reshape(pos, {n}), reshape(all_pos, {R * n}), backend.stream());
        if (stats) stats->gathered_bytes += R * n * static_cast<int64_t>(sizeof(float) + 8);
    }
    TensorView thr_s = reshape(scratch.thr_score.view(), {H, T});
    TensorView thr_p = reshape(scratch.thr_pos.view(), {H, T});
    backend.topk_threshold(thr_s, thr_p, all_scores, all_pos);
    backend.attn_accumulate_selected(part, store.values(slot), scores, rows, pos, thr_s, thr_p);
    if (stats) stats->select_seconds += timer.seconds();
    merge_partials(backend, mp, part, scratch, stats);
}

}  // namespace fot
