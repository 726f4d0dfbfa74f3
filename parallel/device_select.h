// Which GPU a rank uses (docs/architecture.md §6.1: device = local rank on the node), as pure
// logic so that every case is unit-tested without GPUs or MPI. MpiSession gathers the node facts
// (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), each local rank's CUDA_VISIBLE_DEVICES);
// open_session passes them here with cudaGetDeviceCount's answer, before any NCCL call.
//
// Rules:
//  - A rank's device index counts among the devices its process sees (CUDA_VISIBLE_DEVICES
//    is respected: index 0 is the first listed device).
//  - Ranks of a node whose CUDA_VISIBLE_DEVICES are the same (or all unset) are numbered in
//    local-rank order; rank k of n uses device k when n <= visible devices. A launcher that
//    binds GPUs per rank (a different CUDA_VISIBLE_DEVICES per rank, e.g. Slurm
//    --gpus-per-task=1) therefore gives device 0 to each of them.
//  - More such ranks than devices: device k mod visible, so ranks share a GPU. With NCCL
//    (CUDA backend, tp x mp > 1) that is an error (NCCL cannot put two ranks of one
//    communicator on one GPU), thrown with one line naming the ranks, the node and the GPU;
//    pure data parallelism (tp x mp == 1) may share, with a warning (given to the lowest
//    local rank of each shared GPU only, so it is printed once per GPU).
#pragma once

#include <string>
#include <vector>

namespace fot::parallel {

// The facts about this rank's node.
struct NodeInfo {
    std::string name = "localhost";  // host name (MPI_Get_processor_name)
    int local_rank = 0;              // index of this rank in `ranks`
    std::vector<int> ranks{0};       // global ranks on this node, by local rank
    // CUDA_VISIBLE_DEVICES of each local rank ("" when unset), by local rank; may be empty
    // (all unset).
    std::vector<std::string> visible;

    int local_size() const { return static_cast<int>(ranks.size()); }
};

struct DeviceChoice {
    int device = 0;       // CUDA device index in this process
    std::string warning;  // non-empty: log it (a GPU shared under pure data parallelism)
};

// `visible_devices`: cudaGetDeviceCount of this process. `nccl`: the ranks of a group will
// talk over NCCL. Throws fot::Error when no device is visible or NCCL ranks would share one.
DeviceChoice select_cuda_device(const NodeInfo& node, int visible_devices, bool nccl);

}  // namespace fot::parallel
