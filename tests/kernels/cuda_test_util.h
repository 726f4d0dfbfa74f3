// Helpers of the GPU tests (label gpu): the skip guard and the golden data location, plus
// the backend test helpers (backend_test_util.h). Tests built only when FOT_ENABLE_CUDA.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "kernels/cuda/ops.h"
#include "tests/kernels/backend_test_util.h"

// Skips the current test when no CUDA device is visible (CI compiles and links GPU tests but
// has no GPU). Never fails for lack of a device.
#define FOT_SKIP_IF_NO_GPU()                                            \
    do {                                                                \
        if (::fot::kernels::cuda::device_count() == 0) {                \
            GTEST_SKIP() << "no CUDA device visible: GPU test skipped"; \
        }                                                               \
    } while (0)

namespace fot::testing {

// tests/data, or $FOT_TEST_DATA when set (a bundle run on another machine, bench/gpu_bench.sh).
inline std::string cuda_test_data_dir() {
    const char* env = std::getenv("FOT_TEST_DATA");
    return env && *env ? std::string(env) : std::string(FOT_TEST_DATA);
}
inline std::string cuda_golden_dir(const std::string& name) {
    return cuda_test_data_dir() + "/golden/" + name;
}

}  // namespace fot::testing
