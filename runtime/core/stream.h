// Stream: an opaque handle to an ordered queue of device work (a cudaStream_t on CUDA, null
// on the CPU where everything completes before returning). Passed last, as NCCL and CUDA do.
#pragma once

namespace fot {

struct Stream {
    void* handle = nullptr;
};

}  // namespace fot
