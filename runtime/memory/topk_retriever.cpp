// "topk": exact distributed top-k (retriever.h). The K-th best score of the whole memory is
// found from the ranks' own K best, so keys and values never leave their rank.
#include "runtime/memory/topk_retriever.h"

#include "runtime/core/status.h"
#include "runtime/core/timer.h"

namespace fot {

TopKRetriever::TopKRetriever(Backend& backend, parallel::Communicator& mp, RetrieverShape shape,
                             int64_t k)
    : MemoryRetriever(backend, mp, shape), k_(k) {
    FOT_CHECK(k >= 1, "top-k retrieval needs k >= 1 (got ", k, ")");
    // Shapes, not products: an absurd k is an error from the checked shape arithmetic.
    const Shape cand = {shape.heads, shape.max_T, k};
    cand_scores_ = backend.alloc(DType::kF32, cand);
    cand_rows_ = backend.alloc(DType::kI64, cand);
    cand_pos_ = backend.alloc(DType::kI64, cand);
    if (mp.size() > 1) {
        const Shape all = {mp.size(), shape.heads, shape.max_T, k};
        all_scores_ = backend.alloc(DType::kF32, all);
        all_pos_ = backend.alloc(DType::kI64, all);
    }
    thr_score_ = backend.alloc(DType::kF32, {shape.heads * shape.max_T});
    thr_pos_ = backend.alloc(DType::kI64, {shape.heads * shape.max_T});
}

void TopKRetriever::attend(const RetrievalRequest& r) {
    const int64_t K = k_, R = mp_.size(), H = r.part.shape[0], T = r.part.shape[1];
    const MemoryStore& store = *r.store;
    TensorView scores = reshape(cand_scores_.view(), {H, T, K});
    TensorView rows = reshape(cand_rows_.view(), {H, T, K});
    TensorView pos = reshape(cand_pos_.view(), {H, T, K});
    Timer timer;
    backend_.memory_topk(scores, rows, pos, r.q, store.keys(r.slot), store.positions(r.slot),
                         store.size(r.slot), r.scale);
    ++stats_.steps;
    stats_.score_seconds += timer.seconds();
    timer.reset();
    TensorView all_scores = reshape(scores, {1, H, T, K});
    TensorView all_pos = reshape(pos, {1, H, T, K});
    if (R > 1) {
        const int64_t n = H * T * K;
        all_scores = reshape(all_scores_.view(), {R, H, T, K});
        all_pos = reshape(all_pos_.view(), {R, H, T, K});
        mp_.all_gather(reshape(scores, {n}), reshape(all_scores, {R * n}), backend_.stream());
        mp_.all_gather(reshape(pos, {n}), reshape(all_pos, {R * n}), backend_.stream());
        stats_.gathered_bytes += R * n * static_cast<int64_t>(sizeof(float) + 8);
    }
    TensorView thr_s = reshape(thr_score_.view(), {H, T});
    TensorView thr_p = reshape(thr_pos_.view(), {H, T});
    backend_.topk_threshold(thr_s, thr_p, all_scores, all_pos);
    backend_.attn_accumulate_selected(r.part, store.values(r.slot), scores, rows, pos, thr_s,
                                      thr_p);
    stats_.select_seconds += timer.seconds();
    merge_partials(r.part);
}

std::unique_ptr<MemoryRetriever> make_topk_retriever(const RetrieverSpec& spec, Backend& backend,
                                                     parallel::Communicator& mp,
                                                     RetrieverShape shape) {
    return std::make_unique<TopKRetriever>(backend, mp, shape, spec.k);
}

}  // namespace fot
