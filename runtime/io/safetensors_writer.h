// Writing safetensors checkpoints in the Hugging Face layout (see write_safetensors in
// checkpoint.h), with an optional dtype conversion and a progress callback.
//
// Shards are filled in name order; a new shard starts when the next tensor would make the
// current one exceed max_shard_bytes (a tensor larger than that gets a shard of its own),
// as transformers' save_pretrained does. Each file's header lists "__metadata__"
// ({"format": "pt"}) and the tensors in name order with contiguous data offsets, and is
// padded with spaces so that the data section starts at a multiple of 8 bytes. Files are
// written under a temporary name and renamed when complete, so an interrupted write never
// leaves a truncated file under a final name.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/io/checkpoint.h"

namespace fot {

struct SafetensorsWriteOptions {
    // Converts every float tensor to this dtype (f32, bf16 or f16); nullopt keeps each one's.
    std::optional<DType> dtype;
    // Called after each tensor: (tensors written so far, total tensors, file being written).
    std::function<void(size_t, size_t, const std::string&)> progress;
};

// The files written by write_safetensors, in order (index last when there is one).
struct SafetensorsWriteResult {
    std::vector<std::string> files;
    size_t total_bytes = 0;  // tensor bytes, as in the index's metadata.total_size
};

SafetensorsWriteResult write_safetensors(const std::string& dir,
                                         const std::vector<TensorRecord>& tensors,
                                         size_t max_shard_bytes,
                                         const SafetensorsWriteOptions& options);

// The shard file name Hugging Face uses: "model-00001-of-00003.safetensors".
std::string safetensors_shard_name(size_t index, size_t count);

}  // namespace fot
