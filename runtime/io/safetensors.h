// safetensors parsing: an 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
// data section that the offsets index.
//
// parse_safetensors() validates everything before returning: the header length against the
// file size (and a 100 MB cap), well-formed JSON without duplicate keys, a known dtype (F32,
// BF16, F16, I32, I64, U8; other safetensors dtypes are recognised and rejected as
// unsupported), shape x dtype size == the span of data_offsets, offsets inside the data
// section, and no two non-empty tensors overlapping. Holes between tensors are allowed.
// Records point into `data` (zero-copy) and are sorted by name; `origin` (the file path) is
// their `file` and prefixes every error message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/io/checkpoint.h"

namespace fot {

// Largest header accepted (same cap as the reference safetensors implementation).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100u * 1000u * 1000u;

std::vector<TensorRecord> parse_safetensors(const uint8_t* data, size_t size,
                                            const std::string& origin);

// The safetensors spelling of a dtype: "F32", "BF16", "F16", "I32", "I64", "U8".
const char* safetensors_dtype_name(DType t);

}  // namespace fot
