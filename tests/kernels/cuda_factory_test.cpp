// make_backend("cuda") in a CUDA build: a clear error on a machine without a GPU (what CI
// checks: this test is not labelled gpu), a working backend on one with a GPU.
#include <gtest/gtest.h>

#include <string>

#include "kernels/cuda/ops.h"
#include "runtime/backend/backend.h"
#include "runtime/core/status.h"

namespace fot {
namespace {

std::string error_of(const std::string& name, int device) {
    try {
        make_backend(name, device, 0);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(CudaFactory, NoDeviceIsAClearErrorAndADeviceWorks) {
    if (kernels::cuda::device_count() == 0) {
        const std::string msg = error_of("cuda", 0);
        EXPECT_NE(msg.find("no CUDA device is visible"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--backend cpu"), std::string::npos) << msg;
    } else {
        auto b = make_backend("cuda", 0, 0);
        EXPECT_EQ(b->name(), "cuda");
        EXPECT_EQ(b->device(), Device::cuda(0));
        const std::string msg = error_of("cuda", 4096);
        EXPECT_NE(msg.find("device 4096 does not exist"), std::string::npos) << msg;
    }
}

TEST(CudaFactory, CpuBackendNeverNeedsTheGpu) {
    auto b = make_backend("cpu", 0, 1);
    EXPECT_EQ(b->name(), "cpu");
    EXPECT_EQ(b->device(), Device::cpu());
}

}  // namespace
}  // namespace fot
