// Shard maths: which part of a tensor each of `parts` ranks holds. Pure functions, no I/O.
//
// Splits are contiguous and even: part i of n holds [i * n / parts, (i + 1) * n / parts), and
// every split requires parts to divide n (World::validate() checks the model dimensions up
// front; these functions throw fot::Error naming the numbers otherwise).
//
// Tensor parallelism of the LLaMA weights (Megatron / FasterTransformer;
// docs/architecture.md §6.2).
// HF weights are [out_features, in_features], row-major:
//   q_proj, k_proj, v_proj, gate_proj, up_proj   rows split     (column-parallel: out split)
//   o_proj, down_proj                            columns split  (row-parallel: in split; the
//                                                               output needs one all-reduce)
//   embed_tokens, lm_head                        rows split     (vocabulary split)
//   *norm.weight                                 replicated
// Splitting the rows of q/k/v evenly is the same as giving each rank whole heads, because the
// rows are head-major (head h owns rows [h * head_dim, (h + 1) * head_dim)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fot::parallel {

// Half-open index range [begin, end).
struct Range {
    int64_t begin = 0;
    int64_t end = 0;
    int64_t size() const { return end - begin; }
    bool contains(int64_t i) const { return i >= begin && i < end; }
    bool operator==(const Range& o) const { return begin == o.begin && end == o.end; }
};

// Part `index` of n elements split evenly into `parts`. Throws unless parts >= 1, 0 <= index <
// parts, n >= 0 and parts divides n.
Range shard_range(int64_t n, int parts, int index);

// Heads of rank tp_rank when num_heads are split over tp ranks.
int64_t heads_per_rank(int64_t num_heads, int tp);
Range head_range(int64_t num_heads, int tp, int tp_rank);

enum class WeightSplit {
    kReplicated,  // every rank holds the whole tensor
    kRows,        // dim 0 split (column-parallel linears, embedding, lm_head)
    kColumns,     // dim 1 split (row-parallel linears)
};
const char* weight_split_name(WeightSplit s);

// The split of a LLaMA checkpoint tensor, from its HF name ("model.layers.3.mlp.down_proj.weight"
// -> kColumns). Names that are not LLaMA weights throw, so an unexpected tensor is never
// silently replicated.
WeightSplit llama_weight_split(std::string_view name);

// The part of a 2-D [rows, cols] tensor that tp rank `tp_rank` of `tp` holds.
struct Slice2D {
    Range rows;
    Range cols;
};
Slice2D weight_shard(WeightSplit split, int64_t rows, int64_t cols, int tp, int tp_rank);

// Copies `slice` of a row-major [src_rows, src_cols] matrix of elem_size-byte elements from
// src to dst, which receives a dense row-major [slice.rows.size(), slice.cols.size()] matrix.
// Throws when the slice is outside the source.
void copy_slice_2d(const void* src, int64_t src_rows, int64_t src_cols, size_t elem_size,
                   const Slice2D& slice, void* dst);

}  // namespace fot::parallel
