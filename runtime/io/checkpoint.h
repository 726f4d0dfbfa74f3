// Checkpoint: read-only access to the tensors of a Hugging Face model directory, whatever
// the file format.
//
// Supported layouts (looked up in this order):
//   model.safetensors.index.json + shards   |  model.safetensors
//   pytorch_model.bin.index.json + shards   |  pytorch_model.bin
// safetensors files are mmap-ed and tensors are zero-copy views into the mapping. PyTorch
// .bin files (torch.save zip archives with a pickled state dict; f32/bf16/f16 storages) are
// mmap-ed too and tensors point at their storage bytes inside the (uncompressed) archive.
// `*.rotary_emb.inv_freq` tensors (persisted by old LongLLaMA code) are skipped.
//
// Lifetime: every TensorRecord::data stays valid while the Checkpoint lives, and while a
// retain() handle lives. The mappings are read-only (writing through data faults) and
// private: a file changed on disk while mapped can change or (when truncated) fault them. Data
// pointers are not necessarily aligned to the element size: copy (memcpy) before vector loads.
// Every malformed input (truncated file, corrupt header, offsets out of range, overlapping
// tensors, unknown dtype, missing shard, non-zip .bin, unexpected pickle opcode, ...) is
// reported as a fot::Error (thrown by open()) whose one-line message names the file and
// the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"

namespace fot {

struct ModelConfig;

struct TensorRecord {
    std::string name;
    DType dtype = DType::kF32;
    Shape shape;
    const void* data = nullptr;
    size_t nbytes = 0;
    std::string file;  // path of the file that holds it
};

class Checkpoint {
  public:
    virtual ~Checkpoint() = default;

    // Opens the model directory `dir` (see the layouts above). Throws fot::Error.
    static std::unique_ptr<Checkpoint> open(const std::string& dir);
    // Opens one file: *.safetensors or *.bin. Throws fot::Error.
    static std::unique_ptr<Checkpoint> open_file(const std::string& path);

    // All tensors, sorted by name.
    virtual const std::vector<TensorRecord>& tensors() const = 0;
    // nullptr when absent.
    virtual const TensorRecord* find(const std::string& name) const = 0;
    // "safetensors, 2 shards" / "pytorch .bin, 1 file" - for logs and `fotrt inspect`.
    virtual std::string describe() const = 0;
    // The directory or file that was opened ("" when unknown); error messages name it.
    virtual std::string path() const { return {}; }
    // Shared ownership of the file mappings that TensorRecord::data points into: holding it
    // keeps every data pointer valid after the Checkpoint is gone, so weights can be used in
    // place (zero copy). nullptr when the records do not point into a mapping (then copy).
    virtual std::shared_ptr<const void> retain() const { return nullptr; }
};

// The tensor names and shapes a LongLLaMA checkpoint with config `c` must hold.
struct ExpectedTensor {
    std::string name;
    Shape shape;
};
std::vector<ExpectedTensor> expected_llama_tensors(const ModelConfig& c);

// Checks that `ckpt` holds exactly the expected tensors (names, shapes) with float dtypes
// (f32/bf16/f16). Throws fot::Error naming the first missing, extra, mis-shaped or mis-typed
// tensor and its file.
void validate_llama_checkpoint(const Checkpoint& ckpt, const ModelConfig& c);

// Copies rows [row_begin, row_end) and columns [col_begin, col_end) of 2-D tensor `t`
// (or the whole of a 1-D tensor when it is 1-D and cols are [0, n)) into `dst` converted to
// `dst_dtype` (f32, bf16 or f16). Used to load this rank's slice of a weight without reading
// the rest. dst holds (row_end-row_begin) x (col_end-col_begin) elements, row-major.
void copy_tensor_slice(const TensorRecord& t, int64_t row_begin, int64_t row_end, int64_t col_begin,
                       int64_t col_end, void* dst, DType dst_dtype);

// Writes `tensors` as safetensors shards into `dir`: model.safetensors when everything fits
// in `max_shard_bytes`, else model-0000i-of-0000n.safetensors + model.safetensors.index.json
// (the Hugging Face layout). Tensors are written in name order. Throws fot::Error.
void write_safetensors(const std::string& dir, const std::vector<TensorRecord>& tensors,
                       size_t max_shard_bytes);

}  // namespace fot
