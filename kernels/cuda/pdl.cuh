// Programmatic dependent launch (sm_90) for the kernels of the per-token path. Included by .cu
// files only.
//
// A decoded token is ~320 kernels of a few microseconds each; between two stream-ordered
// kernels the GPU drains one grid and only then dispatches the next. With launch_pdl the next
// kernel is launched while the previous one still runs: its blocks are scheduled once every
// block of the previous kernel has started (and called pdl_start), and wait in pdl_start until
// that kernel has finished and its memory is visible. So the contract is simple: a kernel
// launched with launch_pdl calls pdl_start() first, before it touches global memory, in every
// thread; then nothing it reads or writes can overlap the previous kernel. (The emulator
// checks that every thread of such a launch calls it.) Kernels launched the ordinary way are
// unaffected, and pdl_start is a no-op in them. The one exception: memory that no kernel
// writes while the model runs (the weights) may be read before pdl_start; gemv_kernel
// requests its first weights so, to overlap them with the previous kernel's tail.
//
// FOT_CUDA_PDL=0 launches the ordinary way (for benchmark comparisons). If the driver refuses
// the launch attribute, the first refusal switches PDL off for the process, with a warning.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "runtime/core/logging.h"

namespace fot::kernels::cuda {

__device__ __forceinline__ void pdl_start() {
#if defined(FOT_CUDA_EMU_BUILD)
    ::emu::pdl_wait();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// -1: FOT_CUDA_PDL not read yet, 0: off, 1: on.
inline std::atomic<int>& pdl_state() {
    static std::atomic<int> state{-1};
    return state;
}
inline bool pdl_enabled() {
    int s = pdl_state().load(std::memory_order_relaxed);
    if (s < 0) {
        const char* e = std::getenv("FOT_CUDA_PDL");
        s = e && std::strcmp(e, "0") == 0 ? 0 : 1;
        pdl_state().store(s, std::memory_order_relaxed);
    }
    return s == 1;
}

// kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent launch when
// enabled. Errors are left for the caller's cudaGetLastError check, as with <<<>>>.
template <typename... P, typename... A>
void launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                A&&... args) {
#if defined(FOT_CUDA_EMU_BUILD)
    ::emu::Launch(grid, block, smem, stream, pdl_enabled())(kernel, std::forward<A>(args)...);
#else
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_enabled() ? 1 : 0;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, static_cast<P>(args)...);
    if (e == cudaSuccess || cfg.numAttrs == 0) return;
    (void)cudaGetLastError();  // the plain launch below reports a genuine error again
    cfg.numAttrs = 0;
    if (cudaLaunchKernelEx(&cfg, kernel, static_cast<P>(args)...) == cudaSuccess &&
        pdl_state().exchange(0) == 1) {
        FOT_LOG(kWarn) << "CUDA programmatic dependent launch refused (" << cudaGetErrorString(e)
                       << "); launching kernels the ordinary way";
    }
#endif
}

}  // namespace fot::kernels::cuda
