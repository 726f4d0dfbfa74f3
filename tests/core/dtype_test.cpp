#include "runtime/core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace fot {
namespace {

uint32_t bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}
float from_bits(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

TEST(DType, SizesAndNames) {
    EXPECT_EQ(dtype_size(DType::kF32), 4u);
    EXPECT_EQ(dtype_size(DType::kBF16), 2u);
    EXPECT_EQ(dtype_size(DType::kF16), 2u);
    DType t;
    ASSERT_TRUE(parse_dtype("bfloat16", &t));
    EXPECT_EQ(t, DType::kBF16);
    ASSERT_TRUE(parse_dtype("torch.float32", &t));
    EXPECT_EQ(t, DType::kF32);
    ASSERT_TRUE(parse_dtype("F16", &t));
    EXPECT_EQ(t, DType::kF16);
    EXPECT_FALSE(parse_dtype("float8", &t));
}

TEST(DType, Bf16RoundsToNearestEven) {
    // Exactly representable values survive.
    EXPECT_EQ(round_bf16(1.0f), 1.0f);
    EXPECT_EQ(round_bf16(-2.5f), -2.5f);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even -> 1.
    EXPECT_EQ(round_bf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
    // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even -> 1 + 2^-6.
    EXPECT_EQ(round_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
    // Just above halfway rounds up.
    EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81u);
    EXPECT_EQ(f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80u);
    // Overflow to infinity, NaN stays NaN.
    EXPECT_TRUE(std::isinf(round_bf16(std::numeric_limits<float>::max())));
    EXPECT_TRUE(std::isnan(round_bf16(std::numeric_limits<float>::quiet_NaN())));
}

TEST(DType, Bf16MatchesReferenceRoundingOnRandomValues) {
    std::mt19937 rng(7);
    std::uniform_int_distribution<uint32_t> u;
    for (int i = 0; i < 100000; ++i) {
        uint32_t b = u(rng);
        float f = from_bits(b);
        if (std::isnan(f)) continue;
        // Reference: round the 32-bit pattern by hand with a 64-bit computation.
        uint64_t wide = b;
        uint64_t lower = wide & 0xffffu;
        uint64_t upper = wide >> 16;
        if (lower > 0x8000u || (lower == 0x8000u && (upper & 1u))) upper += 1;
        EXPECT_EQ(f32_to_bf16(f), static_cast<uint16_t>(upper)) << std::hex << b;
        EXPECT_EQ(bits(bf16_to_f32(static_cast<uint16_t>(upper))),
                  static_cast<uint32_t>(upper << 16));
    }
}

TEST(DType, F16RoundTripsEveryValue) {
    for (uint32_t h = 0; h < 0x10000u; ++h) {
        float f = f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) {
            EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
            continue;
        }
        EXPECT_EQ(f32_to_f16(f), h) << std::hex << h;
    }
    EXPECT_EQ(f16_to_f32(0x3c00u), 1.0f);
    EXPECT_EQ(f16_to_f32(0x0001u), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(f16_to_f32(0x7bffu), 65504.0f);
    EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00u);                      // rounds to infinity
    EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);  // tie to even
}

TEST(DType, BulkConversions) {
    std::vector<float> src = {1.5f, -2.25f, 3.0e-3f, 65504.f};
    std::vector<uint16_t> half(src.size());
    std::vector<float> back(src.size());
    convert_from_f32(src.data(), half.data(), DType::kBF16, src.size());
    convert_to_f32(half.data(), DType::kBF16, back.data(), src.size());
    for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(back[i], round_bf16(src[i]));
    convert_from_f32(src.data(), half.data(), DType::kF16, src.size());
    convert_to_f32(half.data(), DType::kF16, back.data(), src.size());
    EXPECT_EQ(back[0], 1.5f);
    EXPECT_EQ(back[1], -2.25f);
    EXPECT_EQ(back[3], 65504.f);
}

}  // namespace
}  // namespace fot
