// The backend conformance suite (backend_conformance.h) on CudaBackend, against CpuBackend:
// on a GPU ("cuda"; skips when no device is visible), or compiled against the CUDA emulator
// ("cuda_emulated", kernels/cuda/emu: every CUDA thread is a fiber, so the heavy cases are
// left out there; they run on a GPU).
#include <memory>
#include <string>

#include "kernels/cuda/ops.h"
#include "runtime/backend/cuda_backend.h"
#include "tests/kernels/backend_conformance.h"

namespace fot::testing {
namespace {

BackendMaker cuda_backend_maker() {
    BackendMaker m;
#if defined(FOT_CUDA_EMU_BUILD)
    m.name = "cuda_emulated";
    m.reduced = true;
#else
    m.name = "cuda";
#endif
    m.make = [](std::string* why_not) -> std::unique_ptr<Backend> {
        if (kernels::cuda::device_count() == 0) {
            *why_not = "no CUDA device visible: GPU test skipped";
            return nullptr;
        }
        return std::make_unique<CudaBackend>(0);
    };
    // kernels/cuda/blas.h and gemv.cu: bf16/f16 weights multiply x rounded to the weight's
    // type in both precisions (cuBLAS has no f32 x bf16 GEMM: one extra rounding of x against
    // CpuBackend in kExact, documented in cuda_backend.h); f32 weights multiply f32 x in both
    // precisions. The latter departs from backend.h's kFast (x rounded to bf16), which the
    // model never reaches: in kFast it converts f32 linear weights to bf16 at load.
    m.matmul_x_operand = [](DType w, Precision) { return w; };
    return m;
}

}  // namespace

FOT_INSTANTIATE_BACKEND_CONFORMANCE(cuda_backend_maker());

}  // namespace fot::testing
