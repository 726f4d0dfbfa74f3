// The golden parity checks, written once for every backend: the CPU golden test, the CUDA
// golden test and the multi-rank tests open a model on a golden case and call these.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/self_communicator.h"
#include "runtime/jobs/generate_job.h"
#include "runtime/jobs/session.h"
#include "tests/model/golden_util.h"

namespace fot::testing {

struct LoadedModel {
    parallel::SelfCommunicator world;
    std::unique_ptr<Session> session;
};

// A single-rank session on `dir` with the other settings of `run` (backend, retrieval, ...).
inline std::unique_ptr<LoadedModel> open_golden_model(const std::string& dir, RunConfig run = {}) {
    auto l = std::make_unique<LoadedModel>();
    run.model = dir;
    l->session = open_session(run, l->world);
    return l;
}

// All logits [n, V] of one call over the whole input (after reset()), gathered over tp; with
// `hidden`, every traced hidden state copied to the host.
inline std::vector<float> forward_all(Session& s, const std::vector<int32_t>& ids,
                                      std::vector<std::vector<float>>* hidden = nullptr) {
    std::vector<float> logits;
    ForwardOptions fo;
    fo.logits = LogitsRows::kAll;
    fo.on_logits = [&](int64_t row0, TensorView v) {
        EXPECT_EQ(row0 * s.model_config.vocab_size, static_cast<int64_t>(logits.size()));
        auto rows = s.gather_vocab(v);
        logits.insert(logits.end(), rows.begin(), rows.end());
    };
    if (hidden) {
        hidden->assign(s.model_config.num_hidden_layers + 2, {});
        fo.on_hidden = [&](int64_t idx, int64_t, TensorView h) {
            std::vector<float> host(static_cast<size_t>(h.numel()));
            s.backend->download(host.data(), h, host.size() * sizeof(float));
            (*hidden)[idx].insert((*hidden)[idx].end(), host.begin(), host.end());
        };
    }
    s.seq->reset();
    s.model->forward(*s.seq, ids, fo);
    return logits;
}

// Logits, argmax, hidden states per layer and cache sizes after the forward of golden `dir`.
inline void check_golden_forward(Session& s, const std::string& dir, double tol) {
    const auto ids = read_ids(dir + "/input_ids.json");
    std::vector<std::vector<float>> hidden;
    const auto logits = forward_all(s, ids, &hidden);
    const auto ref = read_f32(dir + "/logits.f32");
    ASSERT_EQ(logits.size(), ref.size());
    EXPECT_LT(max_abs_diff(logits, ref), tol);
    const int64_t V = s.model_config.vocab_size;
    EXPECT_EQ(argmax_rows(logits, V), argmax_rows(ref, V));
    auto summary = read_json(dir + "/summary.json");
    EXPECT_EQ(argmax_rows(logits, V), summary["argmax"].get<std::vector<int32_t>>());

    // Hidden states [L + 1, n, C]: embeddings, the output of layers 0..L-2, then the last
    // layer's output after the final norm (trace index L + 1).
    const auto href = read_f32(dir + "/hidden_states.f32");
    const int64_t n = static_cast<int64_t>(ids.size()), C = s.model_config.hidden_size;
    const int64_t L = s.model_config.num_hidden_layers;
    ASSERT_EQ(static_cast<int64_t>(href.size()), (L + 1) * n * C);
    for (int64_t i = 0; i <= L; ++i) {
        const int64_t ours = i < L ? i : L + 1;
        std::vector<float> r(href.begin() + i * n * C, href.begin() + (i + 1) * n * C);
        EXPECT_LT(max_abs_diff(hidden[ours], r), tol) << "hidden state index " << i;
    }

    const auto& fw = summary["forward_use_cache_true"];
    for (auto& [layer, len] : fw["mem_cache_len_per_mem_layer"].items()) {
        (void)layer;
        EXPECT_EQ(s.seq->memory_tokens(), len.get<int64_t>());
    }
    for (auto& [layer, len] : fw["local_cache_len_per_layer"].items()) {
        EXPECT_EQ(s.seq->local_tokens(std::stoi(layer)), len.get<int64_t>());
    }
}

// Greedy generation of golden `dir`: tokens exact, step logits within tol, cache sizes after
// every step (across the local-cache flushes).
inline void check_golden_greedy(Session& s, const std::string& dir, double tol) {
    auto greedy = read_json(dir + "/greedy.json");
    const auto ids = read_ids(dir + "/input_ids.json");
    GenerateOptions go;
    go.max_new_tokens = greedy["max_new_tokens"].get<int64_t>();
    go.ignore_eos = true;
    go.keep_step_logits = true;
    GenerateResult r = run_generate_job(s, ids, go);
    EXPECT_EQ(r.new_tokens, greedy["new_tokens"].get<std::vector<int32_t>>());

    const auto step_ref = read_f32(dir + "/greedy_step_logits.f32");
    const int64_t V = s.model_config.vocab_size;
    ASSERT_EQ(r.step_logits.size() * V, step_ref.size());
    for (size_t k = 0; k < r.step_logits.size(); ++k) {
        std::vector<float> row(step_ref.begin() + k * V, step_ref.begin() + (k + 1) * V);
        EXPECT_LT(max_abs_diff(r.step_logits[k], row), tol) << "greedy step " << k;
    }
    const auto& steps = greedy["steps"];
    ASSERT_EQ(steps.size(), r.steps.size());
    for (size_t k = 0; k < steps.size(); ++k) {
        EXPECT_EQ(r.steps[k].local_tokens, steps[k]["local_cache_len_after"].get<int64_t>())
            << "step " << k;
        for (auto& [layer, len] : steps[k]["mem_len_after"].items()) {
            (void)layer;
            EXPECT_EQ(r.steps[k].memory_tokens, len.get<int64_t>()) << "step " << k;
        }
    }
}

}  // namespace fot::testing
