#include "runtime/core/dtype.h"

#include <cctype>

#include "runtime/core/status.h"

namespace fot {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::kF32:
            return 4;
        case DType::kBF16:
            return 2;
        case DType::kF16:
            return 2;
        case DType::kI32:
            return 4;
        case DType::kI64:
            return 8;
        case DType::kU8:
            return 1;
    }
    FOT_ASSERT(false);
    return 0;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::kF32:
            return "f32";
        case DType::kBF16:
            return "bf16";
        case DType::kF16:
            return "f16";
        case DType::kI32:
            return "i32";
        case DType::kI64:
            return "i64";
        case DType::kU8:
            return "u8";
    }
    return "?";
}

bool parse_dtype(std::string_view name, DType* out) {
    std::string s;
    for (char c : name) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s.rfind("torch.", 0) == 0) s = s.substr(6);
    if (s == "f32" || s == "float32" || s == "float" || s == "fp32") {
        *out = DType::kF32;
    } else if (s == "bf16" || s == "bfloat16") {
        *out = DType::kBF16;
    } else if (s == "f16" || s == "float16" || s == "half" || s == "fp16") {
        *out = DType::kF16;
    } else if (s == "i32" || s == "int32") {
        *out = DType::kI32;
    } else if (s == "i64" || s == "int64") {
        *out = DType::kI64;
    } else if (s == "u8" || s == "uint8") {
        *out = DType::kU8;
    } else {
        return false;
    }
    return true;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400u) == 0);
            mant &= 0x3ffu;
            bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    uint32_t abs = bits & 0x7fffffffu;
    if (abs >= 0x7f800000u) {  // inf or nan
        return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    }
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
    if (abs < 0x38800000u) {                 // result is subnormal or zero
        if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
        uint32_t e = abs >> 23;
        uint32_t m = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;  // 14 + (127 - 15 - e) - ... => value = m >> (shift - 0)
        // f16 subnormal unit is 2^-24; value = m * 2^(e-150); units = m >> (150-24-e) = m >>
        // (126-e)
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return static_cast<uint16_t>(sign | q);
    }
    uint32_t e = (abs >> 23) - 127 + 15;
    uint32_t m = abs & 0x7fffffu;
    uint32_t q = (e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // may carry into exponent: correct
    return static_cast<uint16_t>(sign | q);
}

void convert_to_f32(const void* src, DType src_type, float* dst, size_t n) {
    switch (src_type) {
        case DType::kF32:
            std::memcpy(dst, src, n * 4);
            return;
        case DType::kBF16: {
            const uint16_t* s = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
            return;
        }
        case DType::kF16: {
            const uint16_t* s = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
            return;
        }
        default:
            FOT_THROW("cannot convert ", dtype_name(src_type), " to f32");
    }
}

void convert_from_f32(const float* src, void* dst, DType dst_type, size_t n) {
    switch (dst_type) {
        case DType::kF32:
            std::memcpy(dst, src, n * 4);
            return;
        case DType::kBF16: {
            uint16_t* d = static_cast<uint16_t*>(dst);
            for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
            return;
        }
        case DType::kF16: {
            uint16_t* d = static_cast<uint16_t*>(dst);
            for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
            return;
        }
        default:
            FOT_THROW("cannot convert f32 to ", dtype_name(dst_type));
    }
}

}  // namespace fot
