// MemoryRetriever: how the queries of a memory layer read a sequence's memory.
//
// The memory of a sequence is sharded by blocks across the ranks of an mp group (block b on
// mp rank b mod mp; MemoryStore holds this rank's shard). A retriever folds this rank's shard
// into the caller's attention partial and merges the partials of the group, so that every
// rank of the group ends with the same [H, T, D+2] partial (bitwise). The built-in ones:
//
//  - "dense" (default): each rank folds its whole shard; partials are all-gathered and merged
//    in rank order. Traffic: H x T x (D + 2) floats per rank.
//  - "topk" (exact top-k): each rank selects its K best entries per (head, query) by
//    q.k * scale; scores and global positions (H x T x K each) are all-gathered; every rank
//    derives the same K-th best (ties by lower global position) and folds its own survivors;
//    then the partials merge as above. Keys and values never leave their rank; K >= memory
//    size is dense attention.
//
// A retriever is built once per model (it owns the scratch for one window of queries and is
// shared by every sequence of the model). State that belongs to one sequence's memory (an
// approximate index, say) lives in a RetrieverIndex that the sequence owns: make_index() is
// called when a sequence is created, on_append() after every block its memory receives.
//
// Adding a retriever: one file that subclasses MemoryRetriever, plus one line in
// retriever_factory.cpp (or register_memory_retriever() from a test or a plugin).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/backend/backend.h"
#include "runtime/core/tensor.h"
#include "runtime/memory/memory_store.h"

namespace fot {

// Statistics of one rank, accumulated over calls until reset. Times are host wall-clock
// seconds around the backend calls (on an asynchronous backend they include only what the
// host waited for).
struct MemoryAttentionStats {
    int64_t steps = 0;           // memory-layer attention calls
    int64_t gathered_bytes = 0;  // bytes this rank received from all-gathers
    double score_seconds = 0;    // scoring this rank's shard (dense: the whole partial)
    double select_seconds = 0;   // top-k: candidate all-gather + threshold + survivors
    double merge_seconds = 0;    // partial all-gather + merge
};

// Per-sequence state of a retriever (an index over that sequence's memory shard).
class RetrieverIndex {
  public:
    virtual ~RetrieverIndex() = default;
};

// The sizes a retriever prepares its scratch for.
struct RetrieverShape {
    int64_t heads = 0;     // heads on this rank
    int64_t head_dim = 0;  // D
    int64_t max_T = 0;     // queries per call (the attention window)
};

// What the model asks for: fold layer `slot` of `store` (this rank's shard) into `part`.
struct RetrievalRequest {
    TensorView part;  // [H, T, D+2]; on mp rank 0 it already holds the local part
    TensorView q;     // [T, H*D] queries (rotated or not, as the keys they meet)
    const MemoryStore* store = nullptr;
    int64_t slot = 0;
    float scale = 1.0f;
    RetrieverIndex* index = nullptr;  // the sequence's index (null when make_index() is)
};

// What a retriever is built from.
struct RetrieverSpec {
    std::string name = "dense";
    int64_t k = 128;  // entries per (head, query) for top-k retrievers
};

class MemoryRetriever {
  public:
    virtual ~MemoryRetriever() = default;
    MemoryRetriever(const MemoryRetriever&) = delete;
    MemoryRetriever& operator=(const MemoryRetriever&) = delete;

    virtual std::string name() const = 0;
    // Collective over mp: every rank of the group calls it for the same layer and queries.
    virtual void attend(const RetrievalRequest& r) = 0;
    // A new sequence's state (null: this retriever keeps none).
    virtual std::unique_ptr<RetrieverIndex> make_index() const { return nullptr; }
    // Rows [first_row, first_row + rows) of layer `slot` of `store` were just appended.
    virtual void on_append(RetrieverIndex* /*index*/, const MemoryStore& /*store*/,
                           int64_t /*slot*/, int64_t /*first_row*/, int64_t /*rows*/) {}

    const MemoryAttentionStats& stats() const { return stats_; }
    void reset_stats() { stats_ = {}; }

  protected:
    MemoryRetriever(Backend& backend, parallel::Communicator& mp, RetrieverShape shape);
    // All-gathers `part` over mp and merges in rank order (no-op when mp has one rank).
    void merge_partials(TensorView part);

    Backend& backend_;
    parallel::Communicator& mp_;
    RetrieverShape shape_;
    MemoryAttentionStats stats_;

  private:
    Buffer gathered_;  // [mp, H, max_T, D+2] when mp > 1
};

using RetrieverFactory = std::function<std::unique_ptr<MemoryRetriever>(
    const RetrieverSpec&, Backend&, parallel::Communicator& mp, RetrieverShape)>;

// Builds the retriever named spec.name. Throws fot::Error naming the known retrievers when
// there is none of that name, or when the spec is invalid for it (e.g. k < 1 for top-k).
std::unique_ptr<MemoryRetriever> make_memory_retriever(const RetrieverSpec& spec, Backend& backend,
                                                       parallel::Communicator& mp,
                                                       RetrieverShape shape);
// Adds (or replaces) a retriever by name: tests and plugins extend the set without touching
// the model. Not thread-safe; call before building models.
void register_memory_retriever(const std::string& name, RetrieverFactory factory);
// Names make_memory_retriever() accepts, sorted.
std::vector<std::string> memory_retriever_names();

}  // namespace fot
