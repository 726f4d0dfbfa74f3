#include "runtime/serve/metrics.h"

#include <sstream>

namespace fot::serve {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    ++counts_[i];
    sum_ += v;
    ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
    std::ostringstream o;
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    int64_t cum = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
        cum += counts_[i];
        o << name << "_bucket{le=\"" << bounds_[i] << "\"} " << cum << "\n";
    }
    cum += counts_.back();
    o << name << "_bucket{le=\"+Inf\"} " << cum << "\n";
    o << name << "_sum " << sum_ << "\n" << name << "_count " << count_ << "\n";
    return o.str();
}

namespace {
std::vector<double> latency_bounds() {
    return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}
}  // namespace

Metrics::Metrics() : ttft_(latency_bounds()), per_token_(latency_bounds()) {}

void Metrics::request_done(int status) {
    std::lock_guard<std::mutex> l(mu_);
    ++requests_[status];
}
void Metrics::tokens(int64_t prompt, int64_t generated) {
    std::lock_guard<std::mutex> l(mu_);
    prompt_tokens_ += prompt;
    generated_tokens_ += generated;
}
void Metrics::time_to_first_token(double s) {
    std::lock_guard<std::mutex> l(mu_);
    ttft_.observe(s);
}
void Metrics::per_token_latency(double s) {
    std::lock_guard<std::mutex> l(mu_);
    per_token_.observe(s);
}
void Metrics::decode_step(int64_t n, bool during_prefill) {
    std::lock_guard<std::mutex> l(mu_);
    ++steps_;
    if (during_prefill) ++steps_during_prefill_;
    step_sequences_ += n;
    if (n > max_step_) max_step_ = n;
}
void Metrics::prefill() {
    std::lock_guard<std::mutex> l(mu_);
    ++prefills_;
}
void Metrics::set_state(int64_t waiting, int64_t running, int64_t memory_tokens, int64_t bytes) {
    std::lock_guard<std::mutex> l(mu_);
    waiting_ = waiting;
    running_ = running;
    memory_tokens_ = memory_tokens;
    bytes_ = bytes;
}
void Metrics::set_sessions(int64_t sessions, int64_t memory_tokens) {
    std::lock_guard<std::mutex> l(mu_);
    sessions_ = sessions;
    session_memory_tokens_ = memory_tokens;
}
int64_t Metrics::decode_steps() const {
    std::lock_guard<std::mutex> l(mu_);
    return steps_;
}
int64_t Metrics::max_sequences_per_step() const {
    std::lock_guard<std::mutex> l(mu_);
    return max_step_;
}
int64_t Metrics::prefills() const {
    std::lock_guard<std::mutex> l(mu_);
    return prefills_;
}
void Metrics::prefill_step() {
    std::lock_guard<std::mutex> l(mu_);
    ++prefill_steps_;
}
int64_t Metrics::prefill_steps() const {
    std::lock_guard<std::mutex> l(mu_);
    return prefill_steps_;
}
int64_t Metrics::decode_steps_during_prefill() const {
    std::lock_guard<std::mutex> l(mu_);
    return steps_during_prefill_;
}

std::string Metrics::render() const {
    std::lock_guard<std::mutex> l(mu_);
    std::ostringstream o;
    o << "# HELP fotrt_requests_total HTTP requests answered, by status code.\n"
         "# TYPE fotrt_requests_total counter\n";
    for (const auto& [code, n] : requests_)
        o << "fotrt_requests_total{code=\"" << code << "\"} " << n << "\n";
    auto counter = [&](const char* name, const char* help, int64_t v) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n"
          << name << " " << v << "\n";
    };
    auto gauge = [&](const char* name, const char* help, int64_t v) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n"
          << name << " " << v << "\n";
    };
    counter("fotrt_prompt_tokens_total", "Prompt tokens prefilled.", prompt_tokens_);
    counter("fotrt_generation_tokens_total", "Tokens generated.", generated_tokens_);
    counter("fotrt_prefills_total", "Prompts and session documents prefilled.", prefills_);
    counter("fotrt_prefill_steps_total",
            "Model steps of the prefills (one window each, or the last-context tail).",
            prefill_steps_);
    counter("fotrt_decode_steps_total", "Batched decode steps.", steps_);
    counter("fotrt_decode_steps_during_prefill_total",
            "Decode steps run between two windows of a prefill.", steps_during_prefill_);
    counter("fotrt_decode_step_sequences_total",
            "Sequences advanced by decode steps (sum of the batch sizes).", step_sequences_);
    gauge("fotrt_decode_step_sequences_max", "Most sequences advanced by one decode step.",
          max_step_);
    gauge("fotrt_queue_length", "Requests waiting for their prefill.", waiting_);
    gauge("fotrt_running_sequences", "Sequences being decoded.", running_);
    gauge("fotrt_memory_tokens",
          "FoT memory tokens per memory layer held by the running sequences (rank 0).",
          memory_tokens_);
    gauge("fotrt_sequence_bytes",
          "Device bytes of the running sequences: local caches and memory arenas (rank 0).",
          bytes_);
    gauge("fotrt_sessions", "Memory sessions held.", sessions_);
    gauge("fotrt_session_memory_tokens",
          "FoT memory tokens per memory layer held by the sessions (rank 0).",
          session_memory_tokens_);
    o << ttft_.render("fotrt_time_to_first_token_seconds",
                      "Time from a request's arrival to its first token.");
    o << per_token_.render("fotrt_time_per_output_token_seconds",
                           "Time between two tokens of one request.");
    return o.str();
}

}  // namespace fot::serve
