#include "runtime/core/tensor.h"
#include "runtime/core/status.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace fot {
namespace {

TEST(Buffer, ZeroInitialisedAlignedAndSized) {
    Buffer b(DType::kBF16, {3, 5});
    EXPECT_EQ(b.numel(), 15);
    EXPECT_EQ(b.nbytes(), 30u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
    for (int i = 0; i < 15; ++i) EXPECT_EQ(b.as<uint16_t>()[i], 0);
    TensorView v = b.view();
    EXPECT_EQ(v.shape, (Shape{3, 5}));
    EXPECT_EQ(v.dtype, DType::kBF16);
}

TEST(Buffer, MoveTransfersOwnershipAndFreesOnce) {
    int frees = 0;
    {
        static int storage[4];
        Buffer a(storage, DType::kI32, {4}, Device::cpu(), [&](void*) { ++frees; });
        Buffer b(std::move(a));
        EXPECT_TRUE(a.empty());
        EXPECT_EQ(b.data(), storage);
        Buffer c;
        c = std::move(b);
        EXPECT_EQ(frees, 0);
    }
    EXPECT_EQ(frees, 1);
}

TEST(Shape, NumelAndString) {
    EXPECT_EQ(shape_numel({2, 3, 4}), 24);
    EXPECT_EQ(shape_numel({}), 1);
    EXPECT_EQ(shape_str({2, 3}), "[2, 3]");
    EXPECT_THROW(Buffer(DType::kF32, {-1}), Error);
}

// Shapes come from files and flags: a product that does not fit in 64 bits must be an error
// naming the shape, never a wrapped (small) size that a buffer is then allocated with.
TEST(Shape, OverflowAndNegativeDimensionsThrow) {
    const int64_t big = int64_t{1} << 32;
    try {
        shape_numel({big, big});
        FAIL() << "2^64 elements accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("[4294967296, 4294967296]"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(shape_numel({3, -2, -2}), Error);  // the product alone would be positive
    EXPECT_EQ(shape_numel({int64_t{1} << 62, 1}), int64_t{1} << 62);
    // Elements fit, bytes do not.
    EXPECT_EQ(shape_nbytes({int64_t{1} << 40}, DType::kF32), size_t{1} << 42);
    EXPECT_THROW(shape_nbytes({int64_t{1} << 62}, DType::kF32), Error);
    // The case: W ~ 2^59 rows of a 64-wide f32 buffer wrapped to 64 bytes.
    EXPECT_THROW(Buffer(DType::kF32, {int64_t{1} << 59, 64}), Error);
    TensorView v{nullptr, DType::kF32, {int64_t{1} << 59, 64}, Device::cpu()};
    EXPECT_THROW(v.nbytes(), Error);
}

TEST(Buffer, HugeButRepresentableSizeIsAnErrorNotACrash) {
    // 2^62 bytes: representable, never allocatable.
    try {
        Buffer b(DType::kF32, {int64_t{1} << 30, int64_t{1} << 30});
        FAIL() << "allocated 2^62 bytes";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("out of host memory"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace fot
