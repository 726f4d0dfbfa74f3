// make_backend("cuda") in a CUDA build: a clear error on a machine without a GPU (what CI
// checks: this test is not labelled gpu), a working backend on one with a GPU. And cuBLAS,
// which CudaBackend loads on first use (kernels/cuda/cublas_api.h): the toolkit's library
// loads without a GPU, and a missing or wrong library is a one-line error.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <string>

#include "kernels/cuda/cublas_api.h"
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

std::string load_error(const std::string& library) {
    try {
        kernels::cuda::load_cublas_api(library);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(CublasLoader, LoadsTheToolkitsCublasWithoutAGpu) {
    const std::string name = kernels::cuda::cublas_library_name();
    if (void* probe = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        dlclose(probe);
    } else {
        GTEST_SKIP() << name << " is not on the library search path here";
    }
    const kernels::cuda::CublasApi api = kernels::cuda::load_cublas_api(name);
    for (const void* fn :
         {reinterpret_cast<const void*>(api.create), reinterpret_cast<const void*>(api.destroy),
          reinterpret_cast<const void*>(api.set_stream),
          reinterpret_cast<const void*>(api.set_math_mode),
          reinterpret_cast<const void*>(api.set_workspace),
          reinterpret_cast<const void*>(api.gemm_ex),
          reinterpret_cast<const void*>(api.gemm_strided_batched_ex)}) {
        EXPECT_NE(fn, nullptr);
    }
    // A call into the loaded library that needs no device.
    ASSERT_NE(api.status_string, nullptr);
    const std::string ok = api.status_string(CUBLAS_STATUS_SUCCESS),
                      unsupported = api.status_string(CUBLAS_STATUS_NOT_SUPPORTED);
    EXPECT_FALSE(ok.empty());
    EXPECT_NE(ok, unsupported);
    // What CudaBackend uses resolves to the same library.
    EXPECT_EQ(kernels::cuda::cublas_api().gemm_ex, api.gemm_ex);
}

TEST(CublasLoader, AMissingLibraryIsAOneLineErrorThatSaysWhatToDo) {
    const std::string msg = load_error("libcublas-fotrt-test-missing.so.99");
    EXPECT_NE(msg.find("libcublas-fotrt-test-missing.so.99 cannot be loaded"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("LD_LIBRARY_PATH"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(CublasLoader, ALibraryWithoutCublasIsAOneLineError) {
    const std::string msg = load_error("libm.so.6");
    EXPECT_NE(msg.find("libm.so.6 has no cublasCreate_v2"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

}  // namespace
}  // namespace fot
