#include "runtime/core/tensor.h"
#include "runtime/core/status.h"

#include <gtest/gtest.h>

#include <cstdint>

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

}  // namespace
}  // namespace fot
