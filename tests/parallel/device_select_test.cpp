// GPU choice from the node-local rank (parallel/device_select.h): one rank per GPU, visible
// device lists, per-rank GPU binding, and the one-line error when NCCL ranks would share a GPU.
#include "parallel/device_select.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/core/status.h"

namespace fot::parallel {
namespace {

NodeInfo node_of(int local_rank, std::vector<int> ranks, std::vector<std::string> visible = {},
                 std::string name = "gpu-node-3") {
    NodeInfo n;
    n.name = std::move(name);
    n.local_rank = local_rank;
    n.ranks = std::move(ranks);
    n.visible = std::move(visible);
    return n;
}

template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(DeviceSelect, LocalRankPicksTheDeviceWhenThereAreEnough) {
    // 4 ranks on this node (global 4..7), 4 or 8 GPUs: local rank r -> device r, no warning.
    for (int visible : {4, 8}) {
        for (int r = 0; r < 4; ++r) {
            const auto c = select_cuda_device(node_of(r, {4, 5, 6, 7}), visible, true);
            EXPECT_EQ(c.device, r) << visible;
            EXPECT_EQ(c.warning, "");
        }
    }
}

TEST(DeviceSelect, ASharedVisibleListCountsFromItsFirstEntry) {
    // CUDA_VISIBLE_DEVICES=2,3 on both ranks: devices 0 and 1 of the process (GPUs 2 and 3).
    const std::vector<std::string> vis{"2,3", "2,3"};
    EXPECT_EQ(select_cuda_device(node_of(0, {0, 1}, vis), 2, true).device, 0);
    EXPECT_EQ(select_cuda_device(node_of(1, {0, 1}, vis), 2, true).device, 1);
}

TEST(DeviceSelect, PerRankBindingGivesEachRankItsOwnDeviceZero) {
    // A launcher bound one GPU per rank (Slurm --gpus-per-task=1): each process sees 1 GPU.
    const std::vector<std::string> vis{"0", "1", "2", "3"};
    for (int r = 0; r < 4; ++r) {
        const auto c = select_cuda_device(node_of(r, {0, 1, 2, 3}, vis), 1, true);
        EXPECT_EQ(c.device, 0);
        EXPECT_EQ(c.warning, "");
    }
    // Bound by UUID, two GPUs per rank: both ranks use their first.
    const std::vector<std::string> uuids{"GPU-aa,GPU-bb", "GPU-cc,GPU-dd"};
    EXPECT_EQ(select_cuda_device(node_of(1, {8, 9}, uuids), 2, true).device, 0);
}

TEST(DeviceSelect, TooFewDevicesWithNcclIsOneLineNamingRanksNodeAndGpu) {
    const std::string e = error_of([] { select_cuda_device(node_of(1, {0, 1}), 1, true); });
    EXPECT_EQ(e.rfind("ranks 0 and 1 on node gpu-node-3 would share GPU 0 (2 ranks, 1 visible "
                      "device): NCCL cannot put two ranks of one communicator on one GPU; run "
                      "one rank per GPU",
                      0),
              0u)
        << e;
    EXPECT_NE(e.find("CUDA_VISIBLE_DEVICES"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    // Rank 0 fails too (every sharing rank stops before NCCL), and with a visible list the
    // GPU is named by its entry: 3 ranks on "5,6" -> ranks 10 and 12 share GPU 5.
    EXPECT_NE(error_of([] { select_cuda_device(node_of(0, {0, 1}), 1, true); }), "");
    const std::vector<std::string> vis{"5,6", "5,6", "5,6"};
    const std::string e3 = error_of([&] {
        select_cuda_device(node_of(2, {10, 11, 12}, vis), 2, true);
    });
    EXPECT_EQ(e3.rfind("ranks 10 and 12 on node gpu-node-3 would share GPU 5 (3 ranks, 2 visible "
                       "devices)",
                       0),
              0u)
        << e3;
    // Rank 11 has GPU 6 to itself: no error there.
    EXPECT_EQ(select_cuda_device(node_of(1, {10, 11, 12}, vis), 2, true).device, 1);
    // Per-rank binding to the same GPU is caught as well.
    const std::vector<std::string> same{"3", "3"};
    EXPECT_NE(error_of([&] {
                  select_cuda_device(node_of(0, {0, 1}, same), 1, true);
              }).find("ranks 0 and 1 on node gpu-node-3 would share GPU 3"),
              std::string::npos);
}

TEST(DeviceSelect, PureDataParallelismMaySharePrintedOncePerGpu) {
    // 4 ranks, 2 GPUs, no NCCL: round robin; the lowest local rank of each GPU warns.
    std::vector<int> devices;
    int warnings = 0;
    for (int r = 0; r < 4; ++r) {
        const auto c = select_cuda_device(node_of(r, {0, 1, 2, 3}), 2, false);
        devices.push_back(c.device);
        if (!c.warning.empty()) {
            ++warnings;
            EXPECT_NE(c.warning.find("would share GPU"), std::string::npos) << c.warning;
            EXPECT_NE(c.warning.find("pure data parallelism"), std::string::npos) << c.warning;
        }
    }
    EXPECT_EQ(devices, (std::vector<int>{0, 1, 0, 1}));
    EXPECT_EQ(warnings, 2);
}

TEST(DeviceSelect, NoVisibleDeviceAndBadInputsThrow) {
    EXPECT_NE(
        error_of([] { select_cuda_device(node_of(0, {0}), 0, false); }).find("sees no CUDA device"),
        std::string::npos);
    EXPECT_THROW(select_cuda_device(node_of(2, {0, 1}), 2, false), Error);
    EXPECT_THROW(select_cuda_device(node_of(0, {0, 1}, {"0"}), 2, false), Error);
}

}  // namespace
}  // namespace fot::parallel
