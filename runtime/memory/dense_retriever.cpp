// "dense": every memory entry of this rank's shard, then the merge over mp (retriever.h).
#include "runtime/core/timer.h"
#include "runtime/memory/retriever.h"

namespace fot {
namespace {

class DenseRetriever final : public MemoryRetriever {
  public:
    DenseRetriever(Backend& backend, parallel::Communicator& mp, RetrieverShape shape)
        : MemoryRetriever(backend, mp, shape) {}

    std::string name() const override { return "dense"; }

    void attend(const RetrievalRequest& r) override {
        Timer timer;
        const MemoryStore& store = *r.store;
        const int64_t n = store.size(r.slot);
        // An empty shard (an mp rank that owns no block yet) still joins the merge.
        if (n > 0) {
            backend_.attn_accumulate(r.part, r.q, store.keys(r.slot), store.values(r.slot), n,
                                     r.scale, INT64_MAX / 2);
        }
        ++stats_.steps;
        stats_.score_seconds += timer.seconds();
        merge_partials(r.part);
    }
};

}  // namespace

std::unique_ptr<MemoryRetriever> make_dense_retriever(const RetrieverSpec&, Backend& backend,
                                                      parallel::Communicator& mp,
                                                      RetrieverShape shape) {
    return std::make_unique<DenseRetriever>(backend, mp, shape);
}

}  // namespace fot
