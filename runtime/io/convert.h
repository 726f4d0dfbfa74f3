// Checkpoint conversion (what `fotrt convert` runs): any supported checkpoint directory ->
// Hugging Face safetensors shards + index, with config.json and the tokenizer files copied.
//
// The source is fully validated (config.json, then validate_llama_checkpoint) before
// anything is written. Existing weight files in the destination (model*.safetensors,
// pytorch_model*.bin and their index files) are an error unless `force`, which deletes them
// first so that no stale shard or index survives next to the new ones. After writing, the
// destination is re-opened and validated. inv_freq tensors are dropped (the reader skips
// them). With a target dtype, float tensors are converted (f32 -> bf16/f16 rounds to nearest
// even) and config.json's "torch_dtype" is updated; otherwise config.json is copied as is.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"

namespace fot {

struct ConvertOptions {
    std::string from, to;
    size_t max_shard_bytes = 5'000'000'000;  // transformers' default "5GB"
    std::optional<DType> dtype;              // nullopt: keep each tensor's dtype
    bool force = false;
    // Called after each tensor: (tensors written, total, file being written).
    std::function<void(size_t, size_t, const std::string&)> progress;
};

struct ConvertSummary {
    std::string source;  // describe() of the input checkpoint
    size_t tensors = 0;
    size_t weight_bytes = 0;
    std::vector<std::string> files;  // every file written, weights first
};

// Throws fot::Error (naming the file or option) on any problem.
ConvertSummary convert_checkpoint(const ConvertOptions& options);

// The files convert copies next to the weights when the source has them.
const std::vector<std::string>& convert_side_files();

}  // namespace fot
