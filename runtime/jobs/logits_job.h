// The logits job: one model call over a whole input, writing the float32 row-major
// [n, vocab] logits of every position (the golden `logits.f32` format).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/jobs/session.h"

namespace fot {

struct LogitsJobResult {
    int64_t tokens = 0;
    int64_t vocab = 0;
    double seconds = 0.0;
};

// Collective over the session's ranks (ids must be identical on every rank; see
// broadcast_ids). Rank 0 writes `out_path` through a temporary file renamed at the end, so a
// failed run never leaves a partial output. The model is reset first (a new document).
LogitsJobResult run_logits_job(Session& s, const std::vector<int32_t>& ids,
                               const std::string& out_path);

}  // namespace fot
