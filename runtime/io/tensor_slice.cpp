// copy_tensor_slice: one rectangle of a (possibly unaligned, mmap-ed) tensor, converted.
#include <cstring>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/io/checkpoint.h"
#include "runtime/io/quote.h"

namespace fot {
namespace {

bool is_float(DType t) {
    return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

}  // namespace

void copy_tensor_slice(const TensorRecord& t, int64_t row_begin, int64_t row_end, int64_t col_begin,
                       int64_t col_end, void* dst, DType dst_dtype) {
    const std::string where = t.file + ": tensor " + safe_quote(t.name);
    FOT_CHECK(t.shape.size() == 1 || t.shape.size() == 2, where,
              ": copy_tensor_slice needs a 1-D "
              "or 2-D tensor, got shape ",
              shape_str(t.shape));
    // A 1-D tensor of n elements is one row of n columns.
    const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1;
    const int64_t cols = t.shape.back();
    FOT_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= rows && 0 <= col_begin &&
                  col_begin <= col_end && col_end <= cols,
              where, ": slice rows [", row_begin, ", ", row_end, ") cols [", col_begin, ", ",
              col_end, ") is outside shape ", shape_str(t.shape));
    FOT_CHECK(is_float(t.dtype), where, ": cannot convert dtype ", dtype_name(t.dtype));
    FOT_CHECK(is_float(dst_dtype), where, ": cannot convert to dtype ", dtype_name(dst_dtype));
    const size_t src_es = dtype_size(t.dtype), dst_es = dtype_size(dst_dtype);
    FOT_CHECK(t.nbytes == static_cast<size_t>(rows * cols) * src_es, where, ": holds ", t.nbytes,
              " bytes, not ", rows * cols, " x ", dtype_name(t.dtype));
    const auto* src = static_cast<const uint8_t*>(t.data);
    auto* out = static_cast<uint8_t*>(dst);
    const size_t n = static_cast<size_t>(col_end - col_begin);
    if (n == 0) return;
    std::vector<float> f32(t.dtype == dst_dtype ? 0 : n);
    std::vector<uint16_t> half(t.dtype == dst_dtype ? 0 : n);
    for (int64_t r = row_begin; r < row_end; ++r) {
        const uint8_t* s = src + (static_cast<size_t>(r * cols + col_begin)) * src_es;
        uint8_t* d = out + static_cast<size_t>(r - row_begin) * n * dst_es;
        if (t.dtype == dst_dtype) {
            std::memcpy(d, s, n * src_es);
            continue;
        }
        // The source may be unaligned (zip entries, safetensors offsets): stage it.
        if (t.dtype == DType::kF32) {
            std::memcpy(f32.data(), s, n * 4);
        } else {
            std::memcpy(half.data(), s, n * 2);
            convert_to_f32(half.data(), t.dtype, f32.data(), n);
        }
        if (dst_dtype == DType::kF32) {
            std::memcpy(d, f32.data(), n * 4);
        } else {
            convert_from_f32(f32.data(), half.data(), dst_dtype, n);
            std::memcpy(d, half.data(), n * 2);
        }
    }
}

}  // namespace fot
