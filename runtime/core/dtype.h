// Element types and exact conversions between them.
//
// f32 -> bf16 rounds to nearest, ties to even (what torch's .to(torch.bfloat16) does), and
// maps NaN to a quiet NaN. bf16 -> f32 and f16 -> f32 are exact. f32 -> f16 rounds to
// nearest even with IEEE overflow to infinity and gradual underflow.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace fot {

enum class DType { kF32, kBF16, kF16, kI32, kI64, kU8 };

size_t dtype_size(DType t);
// Short names: "f32", "bf16", "f16", "i32", "i64", "u8".
const char* dtype_name(DType t);
// Parses a short name or a torch/safetensors spelling ("float32", "bfloat16", "BF16",
// "float16", "F16", ...). Returns false when the name is unknown.
bool parse_dtype(std::string_view name, DType* out);

inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
        return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, keep sign
    }
    uint32_t lsb = (bits >> 16) & 1u;
    bits += 0x7fffu + lsb;
    return static_cast<uint16_t>(bits >> 16);
}

// The value of f rounded to bf16 and widened back: what storing in bf16 does to it.
inline float round_bf16(float f) {
    return bf16_to_f32(f32_to_bf16(f));
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of `src_type` at src to f32 at dst (dst may not alias src).
void convert_to_f32(const void* src, DType src_type, float* dst, size_t n);
// Converts n f32 elements to `dst_type` at dst.
void convert_from_f32(const float* src, void* dst, DType dst_type, size_t n);

}  // namespace fot
