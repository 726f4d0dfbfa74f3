// Several sequences on one model (run by ctest under mpirun with 1 and 2 ranks, every tp x mp
// layout the world allows): interleaving documents changes nothing, and a batched decode step
// of B sequences equals B single decodes. Golden case_a (W 36, lcl 32, memory layers 1 and 3)
// so that prompts and decodes cross several windows, flushes and memory blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "parallel/mpi_session.h"
#include "runtime/jobs/session.h"
#include "tests/model/golden_checks.h"

namespace fot {
namespace {

using testing::golden_dir;
using testing::max_abs_diff;

struct Layout {
    int tp, mp;
};

std::vector<Layout> layouts(int world) {
    std::vector<Layout> out;
    for (int tp = 1; tp <= world; ++tp) {
        for (int mp = 1; tp * mp <= world; ++mp) {
            if (world % (tp * mp) == 0) out.push_back({tp, mp});
        }
    }
    return out;
}

// Deterministic prompts over the vocabulary (ids 3..V-1), different per seed.
std::vector<int32_t> prompt(int64_t n, int seed, int64_t V) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    uint32_t x = 2463534242u + static_cast<uint32_t>(seed) * 7919u;
    for (auto& t : ids) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        t = static_cast<int32_t>(3 + x % static_cast<uint32_t>(V - 3));
    }
    return ids;
}

int32_t argmax(const std::vector<float>& row) {
    return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// One greedy run: full-vocabulary logits of the prompt's last row and of every decode step.
struct Trace {
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> logits;
};

// Logits of the last row of one call on `seq`, gathered over tp.
std::vector<float> last_logits(Session& s, Sequence& seq, const std::vector<int32_t>& ids) {
    std::vector<float> row;
    ForwardOptions fo;
    fo.logits = LogitsRows::kLast;
    fo.on_logits = [&](int64_t, TensorView v) { row = s.gather_vocab(v); };
    s.model->forward(seq, ids, fo);
    return row;
}

Trace greedy_alone(Session& s, const std::vector<int32_t>& ids, int steps) {
    Sequence seq = s.model->new_sequence();
    Trace t;
    t.logits.push_back(last_logits(s, seq, ids));
    for (int i = 0; i < steps; ++i) {
        t.tokens.push_back(argmax(t.logits.back()));
        t.logits.push_back(last_logits(s, seq, {t.tokens.back()}));
    }
    return t;
}

class Sequences : public ::testing::TestWithParam<Retrieval> {
  protected:
    void SetUp() override { world_ = parallel::make_mpi_world_communicator(); }

    std::unique_ptr<Session> open(Layout l) {
        RunConfig run;
        run.model = golden_dir("case_a");
        run.threads = 1;
        run.parallel.tp = l.tp;
        run.parallel.mp = l.mp;
        run.memory.retrieval = GetParam();
        run.memory.k = 7;  // fewer than the memory holds: a real selection
        return open_session(run, *world_);
    }

    std::unique_ptr<parallel::Communicator> world_;
};

std::string name(Layout l, Retrieval r) {
    return "tp " + std::to_string(l.tp) + " mp " + std::to_string(l.mp) + " " + retrieval_name(r);
}

TEST_P(Sequences, InterleavedDocumentsGiveTheTokensAndLogitsOfEachAlone) {
    constexpr int kSteps = 40;  // W = 36: every decode run flushes into memory at least once
    for (Layout l : layouts(world_->size())) {
        auto s = open(l);
        const int64_t V = s->model_config.vocab_size;
        const auto a = prompt(100, 1, V), b = prompt(61, 2, V);
        const Trace ta = greedy_alone(*s, a, kSteps), tb = greedy_alone(*s, b, kSteps);

        Sequence sa = s->model->new_sequence(), sb = s->model->new_sequence();
        std::vector<float> la = last_logits(*s, sa, a), lb = last_logits(*s, sb, b);
        EXPECT_EQ(la, ta.logits[0]) << name(l, GetParam());
        EXPECT_EQ(lb, tb.logits[0]) << name(l, GetParam());
        for (int i = 0; i < kSteps; ++i) {
            la = last_logits(*s, sa, {argmax(la)});
            lb = last_logits(*s, sb, {argmax(lb)});
            ASSERT_EQ(la, ta.logits[i + 1]) << "step " << i << ", " << name(l, GetParam());
            ASSERT_EQ(lb, tb.logits[i + 1]) << "step " << i << ", " << name(l, GetParam());
        }
        EXPECT_GT(sa.memory_tokens(), 0);
        EXPECT_NE(sa.memory_tokens(), sb.memory_tokens());
    }
}

TEST_P(Sequences, BatchedDecodeOfFourEqualsFourSingleDecodes) {
    constexpr int kB = 4, kSteps = 30;
    for (Layout l : layouts(world_->size())) {
        auto s = open(l);
        const int64_t V = s->model_config.vocab_size;
        // Different lengths: no memory yet, one and several prefix windows, a local cache
        // near full (the batch flushes different sequences at different steps).
        const int64_t lengths[kB] = {5, 47, 130, 34};
        std::vector<std::vector<int32_t>> prompts;
        std::vector<Trace> alone;
        for (int b = 0; b < kB; ++b) {
            prompts.push_back(prompt(lengths[b], 10 + b, V));
            alone.push_back(greedy_alone(*s, prompts[b], kSteps));
        }

        std::vector<Sequence> seqs;
        std::vector<Sequence*> ptrs;
        std::vector<int32_t> next(kB);
        for (int b = 0; b < kB; ++b) {
            seqs.push_back(s->model->new_sequence());
            next[b] = argmax(last_logits(*s, seqs.back(), prompts[b]));
        }
        for (auto& q : seqs) ptrs.push_back(&q);
        for (int i = 0; i < kSteps; ++i) {
            std::vector<std::vector<float>> rows(kB);
            ForwardOptions fo;
            fo.logits = LogitsRows::kLast;
            fo.on_logits = [&](int64_t row0, TensorView v) {
                ASSERT_EQ(row0, 0);
                ASSERT_EQ(v.shape[0], kB);
                const std::vector<float> all = s->gather_vocab(v);
                for (int b = 0; b < kB; ++b)
                    rows[b].assign(all.begin() + b * V, all.begin() + (b + 1) * V);
            };
            for (int b = 0; b < kB; ++b) ASSERT_EQ(next[b], alone[b].tokens[i]);
            s->model->decode(ptrs, next, fo);
            for (int b = 0; b < kB; ++b) {
                ASSERT_EQ(rows[b].size(), alone[b].logits[i + 1].size());
                EXPECT_LT(max_abs_diff(rows[b], alone[b].logits[i + 1]), 1e-5)
                    << "sequence " << b << " step " << i << ", " << name(l, GetParam());
                next[b] = argmax(rows[b]);
            }
        }
        for (int b = 0; b < kB; ++b) {
            EXPECT_EQ(seqs[b].next_position(), lengths[b] + kSteps);
        }
    }
}

TEST_P(Sequences, EachSequenceHasItsOwnMemoryCapacity) {
    for (Layout l : layouts(world_->size())) {
        auto s = open(l);
        // 130 tokens put 130 - lcl(32) = 98 tokens into memory: more than 40 per rank on 1 or
        // 2 mp ranks, nothing for an uncapped sequence.
        const auto ids = prompt(130, 3, s->model_config.vocab_size);
        Sequence small = s->model->new_sequence(40), big = s->model->new_sequence(0);
        EXPECT_EQ(small.memory_capacity_tokens(), 40);
        EXPECT_THROW(last_logits(*s, small, ids), Error) << name(l, GetParam());
        EXPECT_FALSE(small.has_past());
        EXPECT_EQ(small.memory_tokens(), 0);
        EXPECT_FALSE(last_logits(*s, big, ids).empty());
        EXPECT_EQ(big.memory_tokens(), 98);
        // The refused sequence is still usable within its capacity.
        const auto short_ids = std::vector<int32_t>(ids.begin(), ids.begin() + 60);
        last_logits(*s, small, short_ids);
        EXPECT_EQ(small.memory_tokens(), 28);
    }
}

TEST_P(Sequences, DecodeRefusesBadBatchesBeforeChangingState) {
    auto s = open({1, 1});
    Sequence a = s->model->new_sequence(), b = s->model->new_sequence();
    ForwardOptions fo;
    EXPECT_THROW(s->model->decode({&a, &a}, {5, 6}, fo), Error);
    EXPECT_THROW(s->model->decode({&a, &b}, {5}, fo), Error);
    EXPECT_THROW(s->model->decode({&a, &b}, {5, -1}, fo), Error);
    EXPECT_THROW(s->model->decode({}, {}, fo), Error);
    EXPECT_EQ(a.next_position(), 0);
    EXPECT_EQ(b.next_position(), 0);
    EXPECT_FALSE(a.has_past());
}

INSTANTIATE_TEST_SUITE_P(Retrievals, Sequences,
                         ::testing::Values(Retrieval::kDense, Retrieval::kTopK),
                         [](const auto& i) { return std::string(retrieval_name(i.param)); });

}  // namespace
}  // namespace fot
