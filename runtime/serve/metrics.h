// Metrics: the server's counters, gauges and histograms, rendered in the Prometheus text
// format for GET /metrics. Thread-safe: the HTTP threads and the engine thread update it.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace fot::serve {

// A cumulative histogram over fixed upper bounds (seconds), as Prometheus expects.
class Histogram {
  public:
    explicit Histogram(std::vector<double> bounds);
    void observe(double v);
    // The `name_bucket`, `name_sum` and `name_count` lines.
    std::string render(const std::string& name, const std::string& help) const;

  private:
    std::vector<double> bounds_;
    std::vector<int64_t> counts_;  // per bound, not cumulative; last = +Inf
    double sum_ = 0.0;
    int64_t count_ = 0;
};

class Metrics {
  public:
    Metrics();
    void request_done(int status);
    void tokens(int64_t prompt, int64_t generated);
    void time_to_first_token(double seconds);
    void per_token_latency(double seconds);
    // One batched decode step over `sequences` sequences; `during_prefill`: a prefill was
    // half done (its remaining windows wait for the next iterations).
    void decode_step(int64_t sequences, bool during_prefill = false);
    void prefill();
    // One model step (one window, or the tail) of a prefill.
    void prefill_step();
    // The engine's state after a step: requests waiting, sequences running, and the FoT
    // memory tokens (per memory layer, summed over the running sequences) and device bytes
    // (local caches and memory arenas) those sequences hold.
    void set_state(int64_t waiting, int64_t running, int64_t memory_tokens, int64_t bytes);
    // Memory sessions held and their FoT memory tokens (per memory layer, summed).
    void set_sessions(int64_t sessions, int64_t memory_tokens);

    int64_t decode_steps() const;
    int64_t max_sequences_per_step() const;
    int64_t prefills() const;
    int64_t prefill_steps() const;
    int64_t decode_steps_during_prefill() const;
    std::string render() const;

  private:
    mutable std::mutex mu_;
    std::map<int, int64_t> requests_;  // HTTP status -> count
    int64_t prompt_tokens_ = 0, generated_tokens_ = 0;
    int64_t steps_ = 0, step_sequences_ = 0, max_step_ = 0, prefills_ = 0;
    int64_t prefill_steps_ = 0, steps_during_prefill_ = 0;
    int64_t waiting_ = 0, running_ = 0, memory_tokens_ = 0, bytes_ = 0;
    int64_t sessions_ = 0, session_memory_tokens_ = 0;
    Histogram ttft_, per_token_;
};

}  // namespace fot::serve
