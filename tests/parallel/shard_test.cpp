#include "parallel/shard.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "runtime/core/status.h"

namespace fot::parallel {
namespace {

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Shard, EvenContiguousRangesTileTheWhole) {
    for (int64_t n : {0, 6, 12, 96, 32000}) {
        for (int parts : {1, 2, 3, 4, 8}) {
            if (n % parts != 0) continue;
            int64_t next = 0;
            for (int i = 0; i < parts; ++i) {
                Range r = shard_range(n, parts, i);
                EXPECT_EQ(r.begin, next);
                EXPECT_EQ(r.size(), n / parts);
                next = r.end;
            }
            EXPECT_EQ(next, n);
        }
    }
    EXPECT_EQ(shard_range(12, 3, 1), (Range{4, 8}));
    EXPECT_TRUE(shard_range(12, 3, 1).contains(7));
    EXPECT_FALSE(shard_range(12, 3, 1).contains(8));
}

TEST(Shard, UnevenOrInvalidSplitsThrowWithTheNumbers) {
    EXPECT_NE(error_of([] { shard_range(10, 3, 0); }).find("3 parts do not divide 10 elements"),
              std::string::npos);
    EXPECT_THROW(shard_range(10, 0, 0), Error);
    EXPECT_THROW(shard_range(10, 2, 2), Error);
    EXPECT_THROW(shard_range(10, 2, -1), Error);
    EXPECT_THROW(shard_range(-2, 2, 0), Error);
}

TEST(Shard, HeadsPerRank) {
    EXPECT_EQ(heads_per_rank(32, 4), 8);
    EXPECT_EQ(head_range(32, 4, 3), (Range{24, 32}));
    EXPECT_EQ(error_of([] { heads_per_rank(8, 3); }),
              "--tp 3 does not divide num_attention_heads=8");
    EXPECT_THROW(head_range(8, 3, 0), Error);
    EXPECT_THROW(heads_per_rank(8, 0), Error);
}

TEST(Shard, LlamaWeightSplits) {
    const std::pair<const char*, WeightSplit> cases[] = {
        {"model.layers.0.self_attn.q_proj.weight", WeightSplit::kRows},
        {"model.layers.11.self_attn.k_proj.weight", WeightSplit::kRows},
        {"model.layers.2.self_attn.v_proj.weight", WeightSplit::kRows},
        {"model.layers.3.mlp.gate_proj.weight", WeightSplit::kRows},
        {"model.layers.3.mlp.up_proj.weight", WeightSplit::kRows},
        {"model.layers.25.self_attn.o_proj.weight", WeightSplit::kColumns},
        {"model.layers.0.mlp.down_proj.weight", WeightSplit::kColumns},
        {"model.embed_tokens.weight", WeightSplit::kRows},
        {"lm_head.weight", WeightSplit::kRows},
        {"model.layers.4.input_layernorm.weight", WeightSplit::kReplicated},
        {"model.layers.4.post_attention_layernorm.weight", WeightSplit::kReplicated},
        {"model.norm.weight", WeightSplit::kReplicated},
    };
    for (const auto& [name, split] : cases) {
        EXPECT_EQ(llama_weight_split(name), split) << name;
    }
    EXPECT_NE(error_of([] {
                  llama_weight_split("model.layers.0.self_attn.rotary_emb.inv_freq");
              }).find("'model.layers.0.self_attn.rotary_emb.inv_freq'"),
              std::string::npos);
    EXPECT_THROW(llama_weight_split("model.layers.0.mlp.gate_proj.bias"), Error);
    EXPECT_STREQ(weight_split_name(WeightSplit::kColumns), "columns");
}

TEST(Shard, WeightShardSlices) {
    // q_proj [out 8, in 6] over tp 2: rank 1 holds rows 4..8, all columns.
    Slice2D q = weight_shard(WeightSplit::kRows, 8, 6, 2, 1);
    EXPECT_EQ(q.rows, (Range{4, 8}));
    EXPECT_EQ(q.cols, (Range{0, 6}));
    Slice2D o = weight_shard(WeightSplit::kColumns, 6, 8, 4, 2);
    EXPECT_EQ(o.rows, (Range{0, 6}));
    EXPECT_EQ(o.cols, (Range{4, 6}));
    Slice2D n = weight_shard(WeightSplit::kReplicated, 1, 6, 4, 3);
    EXPECT_EQ(n.rows, (Range{0, 1}));
    EXPECT_EQ(n.cols, (Range{0, 6}));
    EXPECT_THROW(weight_shard(WeightSplit::kRows, 9, 6, 2, 0), Error);
    EXPECT_THROW(weight_shard(WeightSplit::kColumns, 9, 7, 2, 0), Error);
    EXPECT_THROW(weight_shard(WeightSplit::kReplicated, 9, 7, 2, 2), Error);
}

// Sharding then concatenating (rows: stacked, columns: side by side) rebuilds the matrix.
TEST(Shard, CopySliceReassemblesTheMatrix) {
    const int64_t rows = 6, cols = 8;
    std::vector<float> full(rows * cols);
    std::iota(full.begin(), full.end(), 0.f);
    for (int tp : {1, 2}) {
        std::vector<float> by_rows, by_cols(rows * cols);
        for (int r = 0; r < tp; ++r) {
            Slice2D s = weight_shard(WeightSplit::kRows, rows, cols, tp, r);
            std::vector<float> part(s.rows.size() * s.cols.size());
            copy_slice_2d(full.data(), rows, cols, sizeof(float), s, part.data());
            by_rows.insert(by_rows.end(), part.begin(), part.end());

            Slice2D c = weight_shard(WeightSplit::kColumns, rows, cols, tp, r);
            std::vector<float> cpart(c.rows.size() * c.cols.size());
            copy_slice_2d(full.data(), rows, cols, sizeof(float), c, cpart.data());
            for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < c.cols.size(); ++j)
                    by_cols[i * cols + c.cols.begin + j] = cpart[i * c.cols.size() + j];
        }
        EXPECT_EQ(by_rows, full) << "tp " << tp;
        EXPECT_EQ(by_cols, full) << "tp " << tp;
    }
    // An inner block of 2-byte elements.
    std::vector<uint16_t> h(rows * cols);
    std::iota(h.begin(), h.end(), uint16_t{100});
    std::vector<uint16_t> blk(2 * 3);
    copy_slice_2d(h.data(), rows, cols, 2, Slice2D{{1, 3}, {2, 5}}, blk.data());
    EXPECT_EQ(blk, (std::vector<uint16_t>{110, 111, 112, 118, 119, 120}));
    EXPECT_THROW(copy_slice_2d(h.data(), rows, cols, 2, Slice2D{{1, 7}, {0, 1}}, blk.data()),
                 Error);
    EXPECT_THROW(copy_slice_2d(h.data(), rows, cols, 2, Slice2D{{0, 1}, {3, 2}}, blk.data()),
                 Error);
}

}  // namespace
}  // namespace fot::parallel
