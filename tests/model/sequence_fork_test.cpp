// Sequence::copy_from: a copy of a document's state continues exactly as the original
// would, and what happens to the original afterwards does not reach the copy. This is what
// a server session relies on to answer several questions from one prefilled document.
// LongLlama::forward_step: a call run step by step, with another sequence's calls in between
// (what the server does with a long prefill and the running decodes), equals the call run
// at once.
#include <gtest/gtest.h>

#include "tests/model/golden_checks.h"

namespace fot {
namespace {

// Logits rows of: one call over `question`, then `steps` one-token calls feeding the greedy
// token; returned concatenated.
std::vector<float> continue_greedy(Session& s, Sequence& seq, const std::vector<int32_t>& question,
                                   int steps) {
    std::vector<float> all, row;
    ForwardOptions fo;
    fo.logits = LogitsRows::kLast;
    fo.on_logits = [&](int64_t, TensorView v) { row = s.gather_vocab(v); };
    std::vector<int32_t> feed = question;
    for (int i = 0; i < steps; ++i) {
        s.model->forward(seq, feed, fo);
        all.insert(all.end(), row.begin(), row.end());
        feed.assign(1, argmax(row.data(), static_cast<int64_t>(row.size())));
    }
    return all;
}

class SequenceFork : public ::testing::TestWithParam<const char*> {};

TEST_P(SequenceFork, CopyContinuesExactlyAndIsIndependent) {
    auto m = testing::open_golden_model(testing::golden_dir(GetParam()));
    Session& s = *m->session;
    const auto ids = testing::read_ids(testing::golden_dir(GetParam()) + "/input_ids.json");
    const std::vector<int32_t> doc(ids.begin(), ids.end() - 10);
    const std::vector<int32_t> question(ids.end() - 10, ids.end());
    ForwardOptions none;

    Sequence original = s.model->new_sequence();
    s.model->forward(original, doc, none);
    ASSERT_GT(original.memory_tokens(), 0) << "the document must reach the memory";
    Sequence copy = s.model->new_sequence();
    copy.copy_from(original);
    EXPECT_EQ(copy.memory_tokens(), original.memory_tokens());
    EXPECT_EQ(copy.next_position(), original.next_position());
    EXPECT_EQ(copy.local_tokens(0), original.local_tokens(0));

    // The original moves on (past several flushes into memory) before the copy is used.
    const std::vector<int32_t> other(3 * s.model_config.max_position_embeddings, 7);
    s.model->forward(original, other, none);

    Sequence fresh = s.model->new_sequence();
    s.model->forward(fresh, doc, none);
    const auto want = continue_greedy(s, fresh, question, 40);
    const auto got = continue_greedy(s, copy, question, 40);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(testing::max_abs_diff(got, want), 0.0);  // same arithmetic on the same state
}

TEST_P(SequenceFork, ForwardStepsInterleavedWithOtherCallsEqualForward) {
    auto m = testing::open_golden_model(testing::golden_dir(GetParam()));
    Session& s = *m->session;
    const auto ids = testing::read_ids(testing::golden_dir(GetParam()) + "/input_ids.json");
    const int64_t W = s.model_config.max_position_embeddings;
    ASSERT_GT(static_cast<int64_t>(ids.size()), 2 * W) << "the prompt must span several windows";
    std::vector<float> row;
    ForwardOptions fo;
    fo.logits = LogitsRows::kLast;
    fo.on_logits = [&](int64_t, TensorView v) { row = s.gather_vocab(v); };

    // Serial: the prompt in one call, twice (without, then with a past); another sequence
    // generating alone.
    Sequence whole = s.model->new_sequence();
    std::vector<float> want;
    for (int call = 0; call < 2; ++call) {
        s.model->forward(whole, ids, fo);
        want.insert(want.end(), row.begin(), row.end());
    }
    const std::vector<int32_t> start{1, 5, 9};
    const int kOtherSteps = 30;
    Sequence alone = s.model->new_sequence();
    const std::vector<float> want_other = continue_greedy(s, alone, start, kOtherSteps);

    // The same two calls step by step, the other sequence advancing one token after each step.
    Sequence stepped = s.model->new_sequence();
    Sequence other = s.model->new_sequence();
    std::vector<float> got, got_other;
    std::vector<int32_t> feed = start;
    auto other_step = [&] {
        std::vector<float> keep = row;
        s.model->forward(other, feed, fo);
        got_other.insert(got_other.end(), row.begin(), row.end());
        feed.assign(1, argmax(row.data(), static_cast<int64_t>(row.size())));
        row = keep;
    };
    int64_t steps = 0;
    for (int call = 0; call < 2; ++call) {
        for (int64_t at = 0; at < static_cast<int64_t>(ids.size());) {
            const int64_t next = s.model->forward_step(stepped, ids, at, fo);
            ASSERT_GT(next, at);
            at = next;
            ++steps;
            other_step();
        }
        got.insert(got.end(), row.begin(), row.end());
    }
    EXPECT_GT(steps, 4) << "each call must take several steps";
    while (static_cast<int64_t>(got_other.size()) < kOtherSteps * s.model_config.vocab_size)
        other_step();
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(testing::max_abs_diff(got, want), 0.0);
    ASSERT_EQ(got_other.size(), want_other.size());
    EXPECT_EQ(testing::max_abs_diff(got_other, want_other), 0.0);

    // A step that does not start one of the call's steps is refused.
    Sequence bad = s.model->new_sequence();
    EXPECT_THROW(s.model->forward_step(bad, ids, 1, fo), Error);
}

INSTANTIATE_TEST_SUITE_P(Golden, SequenceFork, ::testing::Values("case_a", "case_e"));

}  // namespace
}  // namespace fot
