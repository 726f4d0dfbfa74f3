// PyTorch .bin checkpoints: the zip archive torch.save writes (PyTorch >= 1.6).
//
// Layout: <top>/data.pkl (the pickled state dict, see pickle.h), <top>/data/<key> (the raw
// little-endian bytes of each storage), <top>/version, ... where <top> is any single folder
// name (torch uses the file name without ".bin"). Each tensor must be contiguous and
// row-major (size-1 dimensions may have any stride, as in torch's is_contiguous), and its
// bytes [storage_offset, storage_offset + numel) x element size must lie in its storage,
// whose entry must hold exactly numel(storage) x element size bytes. Several tensors may
// share a storage. The legacy (pre-1.6, non-zip) torch.save format is detected and rejected.
// Records point into `data` (zero-copy; not necessarily aligned) and are sorted by name;
// `origin` (the file path) is their `file` and prefixes every error message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/io/checkpoint.h"

namespace fot {

std::vector<TensorRecord> parse_pytorch_bin(const uint8_t* data, size_t size,
                                            const std::string& origin);

}  // namespace fot
