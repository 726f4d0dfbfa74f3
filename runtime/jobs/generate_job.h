// The generate job: the reference's generation loop. The prompt goes in one model call
// (prefix windows into memory, the tail into the local cache), then one token per call with
// the caches, flushing the local cache into memory whenever it would exceed W.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/jobs/session.h"
#include "runtime/model/sampler.h"

namespace fot {

struct GenerateOptions {
    int64_t max_new_tokens = 16;
    SamplingParams sampling;
    bool ignore_eos = false;
    bool keep_step_logits = false;  // record the full logits row of every step (tests)
    // Called on every rank with each new token as soon as it is chosen.
    std::function<void(int32_t)> on_token;
    // Called on every rank before each window of a model call, the prompt's included (a long
    // prompt is many windows): dispatch serves requests and sends heartbeats from here.
    std::function<void()> between_windows;
    // Progress lines on rank 0 (runtime/core/progress.h) for the prompt's windows and the
    // decode steps, unless the run is --quiet. Off for the corpus jobs, which report records.
    bool show_progress = false;
};

struct GenerateStep {
    int32_t token = 0;
    int64_t local_tokens = 0;   // local cache entries after the step (layer 0)
    int64_t memory_tokens = 0;  // memory entries per memory layer after the step
};

struct GenerateResult {
    std::vector<int32_t> new_tokens;
    std::vector<GenerateStep> steps;
    std::vector<std::vector<float>> step_logits;  // when keep_step_logits
    bool stopped_at_eos = false;
    double prefill_seconds = 0.0;
    double decode_seconds = 0.0;
};

// Collective over the session's ranks; the prompt must be identical on every rank. Every
// rank gets the same tokens (same logits, same seeded sampler). Resets the session's sequence
// first.
GenerateResult run_generate_job(Session& s, const std::vector<int32_t>& prompt,
                                const GenerateOptions& opts);

}  // namespace fot
