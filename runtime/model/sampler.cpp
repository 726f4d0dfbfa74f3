#include "runtime/model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "runtime/core/status.h"

namespace fot {

Sampler::Sampler(SamplingParams p) : params_(p), rng_(p.seed) {
    FOT_CHECK(p.top_p > 0.0 && p.top_p <= 1.0, "--top-p must be in (0, 1], got ", p.top_p);
    FOT_CHECK(std::isfinite(p.temperature), "--temperature must be a finite number");
}

int32_t argmax(const float* x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i) {
        if (x[i] > x[best]) best = i;
    }
    return static_cast<int32_t>(best);
}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
    if (greedy()) return argmax(logits, vocab);
    const double inv_t = 1.0 / params_.temperature;
    const float mx = logits[argmax(logits, vocab)];
    std::vector<double> p(vocab);
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
        p[i] = std::exp((static_cast<double>(logits[i]) - mx) * inv_t);
        sum += p[i];
    }
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    // Most likely first; ties by id so the order is deterministic.
    std::sort(order.begin(), order.end(),
              [&](int32_t a, int32_t b) { return p[a] != p[b] ? p[a] > p[b] : a < b; });
    double kept = 0.0;
    size_t n = 0;
    while (n < order.size()) {
        kept += p[order[n]] / sum;
        ++n;
        if (kept >= params_.top_p) break;
    }
    std::uniform_real_distribution<double> u(0.0, kept);
    double r = u(rng_), acc = 0.0;
    for (size_t i = 0; i < n; ++i) {
        acc += p[order[i]] / sum;
        if (r < acc) return order[i];
    }
    return order[n - 1];
}

}  // namespace fot
