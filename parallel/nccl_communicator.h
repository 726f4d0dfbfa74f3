// NcclCommunicator: collectives on CUDA device buffers over NCCL (built when FOT_HAVE_NCCL).
//
// `device` is the CUDA device index of this rank (select_cuda_device, device_select.h).
// Bootstrap (as llm.c's multi_gpu_config_init does): on `device`, rank 0 of the host
// communicator `bootstrap` creates an ncclUniqueId, broadcasts it over `bootstrap`, and every
// rank joins with ncclCommInitRank. Collective over `bootstrap`; the NCCL communicator has its
// rank and size.
//
// Buffers must live on Device::cuda(device). Operations are enqueued on the given stream
// (null = the legacy default stream) and return before they complete; synchronise the stream
// before reading results on the host. all_reduce supports f32, bf16, f16, i32, i64. barrier()
// synchronises under the collective watchdog: on timeout it aborts the NCCL communicator and
// the world. split() uses ncclCommSplit. The control-plane helpers (broadcast_string, ...)
// are host-only and throw here; use the bootstrap communicator for them.
//
// Without NCCL the factory throws a fot::Error that says how to build with it.
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace fot::parallel {

#if FOT_HAVE_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device);
#else
inline std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device) {
    FOT_THROW(
        "the NCCL communicator is not available: fotrt was built without NCCL (configure "
        "with -DFOT_CUDA=ON and NCCL installed under the CUDA toolkit or NCCL_ROOT)");
}
#endif

}  // namespace fot::parallel
