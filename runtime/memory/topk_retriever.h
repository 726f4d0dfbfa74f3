// TopKRetriever: exact distributed top-k over a sequence's memory (see retriever.h).
// Declared here so that tests and diagnostics can read the last call's selection.
#pragma once

#include "runtime/memory/retriever.h"

namespace fot {

class TopKRetriever final : public MemoryRetriever {
  public:
    // Throws fot::Error for k < 1.
    TopKRetriever(Backend& backend, parallel::Communicator& mp, RetrieverShape shape, int64_t k);

    std::string name() const override { return "topk"; }
    void attend(const RetrievalRequest& r) override;

    int64_t k() const { return k_; }
    // The last call's selection, flat [H * T * K] / [H * T] prefixes of these buffers:
    // this rank's candidates (score, row in the shard or -1, global position) and the
    // group-wide K-th best (score, position) per (head, query). A candidate survives when
    // (score, -position) >= (threshold score, -threshold position).
    const Buffer& candidate_scores() const { return cand_scores_; }
    const Buffer& candidate_rows() const { return cand_rows_; }
    const Buffer& candidate_positions() const { return cand_pos_; }
    const Buffer& threshold_scores() const { return thr_score_; }
    const Buffer& threshold_positions() const { return thr_pos_; }

  private:
    int64_t k_;
    Buffer cand_scores_, cand_rows_, cand_pos_;  // [H, max_T, K]
    Buffer all_scores_, all_pos_;                // [mp, H, max_T, K]
    Buffer thr_score_, thr_pos_;                 // [H, max_T]
};

}  // namespace fot
