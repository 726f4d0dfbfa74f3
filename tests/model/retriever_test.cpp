// The retriever extension point: a retriever defined and registered here, in the test, is
// used by the model without any change to model code. "first-n" attends to the first n
// entries of the shard (n = the spec's k) and counts, per sequence, what its hooks saw.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

#include "runtime/core/status.h"
#include "runtime/io/checkpoint.h"
#include "runtime/memory/retriever.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/weights.h"
#include "tests/model/golden_checks.h"

namespace fot {
namespace {

struct CountingIndex : RetrieverIndex {
    std::map<int64_t, int64_t> rows;  // memory slot -> rows appended
    int64_t attends = 0;
};

class FirstNRetriever final : public MemoryRetriever {
  public:
    FirstNRetriever(Backend& b, parallel::Communicator& mp, RetrieverShape shape, int64_t n)
        : MemoryRetriever(b, mp, shape), n_(n) {}

    std::string name() const override { return "first-n"; }

    void attend(const RetrievalRequest& r) override {
        const int64_t n = std::min(n_, r.store->size(r.slot));
        if (n > 0) {
            backend_.attn_accumulate(r.part, r.q, r.store->keys(r.slot), r.store->values(r.slot), n,
                                     r.scale, INT64_MAX / 2);
        }
        ++static_cast<CountingIndex*>(r.index)->attends;
        merge_partials(r.part);
    }

    std::unique_ptr<RetrieverIndex> make_index() const override {
        return std::make_unique<CountingIndex>();
    }

    void on_append(RetrieverIndex* index, const MemoryStore& store, int64_t slot, int64_t first_row,
                   int64_t rows) override {
        EXPECT_EQ(first_row + rows, store.size(slot));
        static_cast<CountingIndex*>(index)->rows[slot] += rows;
    }

  private:
    int64_t n_;
};

class Retrievers : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        register_memory_retriever("first-n", [](const RetrieverSpec& spec, Backend& b,
                                                parallel::Communicator& mp, RetrieverShape shape) {
            return std::make_unique<FirstNRetriever>(b, mp, shape, spec.k);
        });
    }

    // A model on golden case_a with the named retriever (k = n for first-n).
    std::unique_ptr<LongLlama> model(const std::string& retriever, int64_t k) {
        Session& s = *golden_->session;
        ModelOptions mo = s.model->options();
        mo.retriever = retriever;
        mo.k = k;
        ModelWeights w =
            load_model_weights(*Checkpoint::open(dir_), s.model_config, *s.backend, 0, 1);
        return std::make_unique<LongLlama>(s.model_config, std::move(w), *s.backend, self_, self_,
                                           mo);
    }

    std::vector<float> logits(LongLlama& m, Sequence& seq) {
        std::vector<float> out;
        ForwardOptions fo;
        fo.logits = LogitsRows::kAll;
        fo.on_logits = [&](int64_t, TensorView v) {
            const size_t n = static_cast<size_t>(v.numel());
            const size_t at = out.size();
            out.resize(at + n);
            golden_->session->backend->download(out.data() + at, v, n * sizeof(float));
        };
        m.forward(seq, ids_, fo);
        return out;
    }

    std::string dir_ = testing::golden_dir("case_a");
    std::vector<int32_t> ids_ = testing::read_ids(dir_ + "/input_ids.json");
    std::unique_ptr<testing::LoadedModel> golden_ = testing::open_golden_model(dir_);
    parallel::SelfCommunicator self_;
};

TEST_F(Retrievers, ARetrieverRegisteredByATestRunsInTheModel) {
    auto names = memory_retriever_names();
    EXPECT_NE(std::find(names.begin(), names.end(), "first-n"), names.end());

    auto first_n = model("first-n", 1 << 20);  // n >= memory: every entry, as dense
    auto dense = model("dense", 0);
    EXPECT_EQ(first_n->retriever()->name(), "first-n");
    Sequence a = first_n->new_sequence(), b = dense->new_sequence();
    const auto la = logits(*first_n, a), lb = logits(*dense, b);
    ASSERT_GT(a.memory_tokens(), 0);
    EXPECT_EQ(la, lb);  // the same accumulation over the same entries: bitwise

    // The hooks saw every block of this sequence, in every memory layer.
    auto* index = dynamic_cast<CountingIndex*>(a.retriever_index());
    ASSERT_NE(index, nullptr);
    const int64_t layers = static_cast<int64_t>(golden_->session->model_config.mem_layers.size());
    ASSERT_EQ(static_cast<int64_t>(index->rows.size()), layers);
    for (const auto& [slot, rows] : index->rows) EXPECT_EQ(rows, a.memory_tokens_local());
    EXPECT_GT(index->attends, 0);
}

TEST_F(Retrievers, TheRetrieverDecidesWhatTheModelReads) {
    auto none = model("first-n", 0), dense = model("dense", 0);
    Sequence a = none->new_sequence(), b = dense->new_sequence();
    const auto la = logits(*none, a), lb = logits(*dense, b);
    ASSERT_EQ(la.size(), lb.size());
    EXPECT_GT(testing::max_abs_diff(la, lb), 1e-3);
}

TEST_F(Retrievers, AnUnknownNameIsAnErrorThatListsTheKnownOnes) {
    try {
        model("no-such-retriever", 1);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no-such-retriever"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("dense"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("topk"), std::string::npos);
    }
}

}  // namespace
}  // namespace fot
