// Attention over a memory that is sharded by blocks across the ranks of an mp group
// (DESIGN.md §4.3). Both functions are collective over `mp` and leave in `part`
// [H, T, D+2] the merged partial of everything the caller had folded in before (the local
// part, on mp rank 0 only) plus the memory of all ranks; the result is bitwise identical on
// every rank of the group.
//
//  - Dense (default): each rank folds its whole shard; partials are all-gathered and merged
//    in rank order. Traffic: H x T x (D + 2) floats per rank.
//  - Exact top-k: each rank selects its K best entries per (head, query) by q.k/sqrt(D);
//    scores and global positions (H x T x K each) are all-gathered; every rank derives the
//    same K-th best (ties by lower global position) and folds its own survivors; then the
//    partials merge as above. Keys and values never leave their rank; K >= memory size is
//    dense attention.
#pragma once

#include <cstdint>

#include "parallel/communicator.h"
#include "runtime/backend/backend.h"
#include "runtime/core/tensor.h"
#include "runtime/memory/memory_store.h"

namespace fot {

// Preallocated buffers for up to `max_T` queries (no allocation per step).
class MemoryAttentionScratch {
  public:
    MemoryAttentionScratch(Backend& backend, int64_t heads, int64_t head_dim, int64_t max_T,
                           int64_t mp_size, int64_t k /* 0: dense only */);

    Buffer gathered;                          // [mp, H, max_T, D+2]
    Buffer cand_scores, cand_rows, cand_pos;  // [H, max_T, K]
    Buffer all_scores, all_pos;               // [mp, H, max_T, K]
    Buffer thr_score, thr_pos;                // [H, max_T]
    int64_t k = 0;
};

// Statistics accumulated over calls. Times are host wall-clock seconds around the backend
// calls (on an asynchronous backend they include only what the host waited for).
struct MemoryAttentionStats {
    int64_t steps = 0;           // memory-layer attention calls
    int64_t gathered_bytes = 0;  // bytes this rank received from all-gathers
    double score_seconds = 0;    // scoring this rank's shard (dense: the whole partial)
    double select_seconds = 0;   // top-k: candidate all-gather + threshold + survivors
    double merge_seconds = 0;    // partial all-gather + merge
};

void memory_attention_dense(Backend& backend, parallel::Communicator& mp, TensorView part,
                            TensorView q, const MemoryStore& store, int64_t slot, float scale,
                            MemoryAttentionScratch& scratch, MemoryAttentionStats* stats);

void memory_attention_topk(Backend& backend, parallel::Communicator& mp, TensorView part,
                           TensorView q, const MemoryStore& store, int64_t slot, float scale,
                           MemoryAttentionScratch& scratch, MemoryAttentionStats* stats);

// Merges `part` over the mp group (all-gather + merge in rank order); no-op when mp == 1.
void merge_partials(Backend& backend, parallel::Communicator& mp, TensorView part,
                    MemoryAttentionScratch& scratch, MemoryAttentionStats* stats);

}  // namespace fot
