#include "parallel/shard.h"

#include <cstring>

#include "runtime/core/status.h"

namespace fot::parallel {

Range shard_range(int64_t n, int parts, int index) {
    FOT_CHECK(parts >= 1, "shard_range: cannot split into ", parts, " parts");
    FOT_CHECK(index >= 0 && index < parts, "shard_range: part ", index, " out of range [0, ", parts,
              ")");
    FOT_CHECK(n >= 0, "shard_range: cannot split ", n, " elements");
    FOT_CHECK(n % parts == 0, "shard_range: ", parts, " parts do not divide ", n,
              " elements evenly");
    int64_t per = n / parts;
    return {per * index, per * (index + 1)};
}

int64_t heads_per_rank(int64_t num_heads, int tp) {
    FOT_CHECK(tp >= 1, "heads_per_rank: --tp ", tp, " must be >= 1");
    FOT_CHECK(num_heads >= 1 && num_heads % tp == 0, "--tp ", tp,
              " does not divide num_attention_heads=", num_heads);
    return num_heads / tp;
}

Range head_range(int64_t num_heads, int tp, int tp_rank) {
    heads_per_rank(num_heads, tp);
    return shard_range(num_heads, tp, tp_rank);
}

const char* weight_split_name(WeightSplit s) {
    switch (s) {
        case WeightSplit::kReplicated:
            return "replicated";
        case WeightSplit::kRows:
            return "rows";
        case WeightSplit::kColumns:
            return "columns";
    }
    return "?";
}

namespace {
bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
}  // namespace

WeightSplit llama_weight_split(std::string_view name) {
    struct Rule {
        std::string_view suffix;
        WeightSplit split;
    };
    static constexpr Rule kRules[] = {
        {"self_attn.q_proj.weight", WeightSplit::kRows},
        {"self_attn.k_proj.weight", WeightSplit::kRows},
        {"self_attn.v_proj.weight", WeightSplit::kRows},
        {"mlp.gate_proj.weight", WeightSplit::kRows},
        {"mlp.up_proj.weight", WeightSplit::kRows},
        {"self_attn.o_proj.weight", WeightSplit::kColumns},
        {"mlp.down_proj.weight", WeightSplit::kColumns},
        {"embed_tokens.weight", WeightSplit::kRows},
        {"lm_head.weight", WeightSplit::kRows},
        {"input_layernorm.weight", WeightSplit::kReplicated},
        {"post_attention_layernorm.weight", WeightSplit::kReplicated},
        {"model.norm.weight", WeightSplit::kReplicated},
    };
    for (const Rule& r : kRules) {
        if (ends_with(name, r.suffix)) return r.split;
    }
    FOT_THROW("tensor '", name, "' is not a LLaMA weight this runtime knows how to shard");
}

Slice2D weight_shard(WeightSplit split, int64_t rows, int64_t cols, int tp, int tp_rank) {
    FOT_CHECK(rows >= 0 && cols >= 0, "weight_shard: bad shape [", rows, ", ", cols, "]");
    Slice2D s{{0, rows}, {0, cols}};
    switch (split) {
        case WeightSplit::kReplicated:
            FOT_CHECK(tp >= 1 && tp_rank >= 0 && tp_rank < tp, "weight_shard: tp rank ", tp_rank,
                      " out of range [0, ", tp, ")");
            break;
        case WeightSplit::kRows:
            s.rows = shard_range(rows, tp, tp_rank);
            break;
        case WeightSplit::kColumns:
            s.cols = shard_range(cols, tp, tp_rank);
            break;
    }
    return s;
}

void copy_slice_2d(const void* src, int64_t src_rows, int64_t src_cols, size_t elem_size,
                   const Slice2D& slice, void* dst) {
    FOT_CHECK(slice.rows.begin >= 0 && slice.rows.begin <= slice.rows.end &&
                  slice.rows.end <= src_rows && slice.cols.begin >= 0 &&
                  slice.cols.begin <= slice.cols.end && slice.cols.end <= src_cols,
              "copy_slice_2d: slice rows [", slice.rows.begin, ", ", slice.rows.end, ") cols [",
              slice.cols.begin, ", ", slice.cols.end, ") is outside a [", src_rows, ", ", src_cols,
              "] matrix");
    const auto* s = static_cast<const unsigned char*>(src);
    auto* d = static_cast<unsigned char*>(dst);
    const size_t row_bytes = static_cast<size_t>(slice.cols.size()) * elem_size;
    if (row_bytes == 0) return;
    for (int64_t r = slice.rows.begin; r < slice.rows.end; ++r) {
        const unsigned char* from =
            s + (static_cast<size_t>(r) * src_cols + slice.cols.begin) * elem_size;
        std::memcpy(d, from, row_bytes);
        d += row_bytes;
    }
}

}  // namespace fot::parallel
