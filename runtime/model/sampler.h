// Sampler: picks the next token from one row of full-vocabulary logits.
//
// temperature <= 0 is greedy (argmax; the lowest id wins ties, as torch.argmax). Otherwise
// softmax(logits / temperature), restricted to the smallest set of most likely tokens whose
// probability reaches top_p, sampled with a seeded generator: the same seed gives the same
// tokens on every rank and every run.
#pragma once

#include <cstdint>
#include <random>

namespace fot {

struct SamplingParams {
    double temperature = 0.0;
    double top_p = 1.0;
    uint64_t seed = 0;
};

class Sampler {
  public:
    explicit Sampler(SamplingParams p);
    int32_t sample(const float* logits, int64_t vocab);
    bool greedy() const { return params_.temperature <= 0.0; }

  private:
    SamplingParams params_;
    std::mt19937_64 rng_;
};

// Index of the largest value (first one on ties).
int32_t argmax(const float* x, int64_t n);

}  // namespace fot
