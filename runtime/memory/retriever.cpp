#include "runtime/memory/retriever.h"

#include "runtime/core/timer.h"

namespace fot {

MemoryRetriever::MemoryRetriever(Backend& backend, parallel::Communicator& mp, RetrieverShape shape)
    : backend_(backend), mp_(mp), shape_(shape) {
    if (mp.size() > 1) {
        gathered_ = backend.alloc(DType::kF32,
                                  {mp.size() * shape.heads * shape.max_T * (shape.head_dim + 2)});
    }
}

void MemoryRetriever::merge_partials(TensorView part) {
    const int64_t R = mp_.size();
    if (R == 1) return;
    Timer timer;
    const int64_t n = part.numel();
    TensorView gathered =
        reshape(gathered_.view(), {R, part.shape[0], part.shape[1], part.shape[2]});
    mp_.all_gather(reshape(part, {n}), reshape(gathered, {R * n}), backend_.stream());
    stats_.gathered_bytes += R * n * static_cast<int64_t>(sizeof(float));
    backend_.attn_partial_merge(part, gathered);
    stats_.merge_seconds += timer.seconds();
}

}  // namespace fot
