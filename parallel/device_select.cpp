#include "parallel/device_select.h"

#include <sstream>

#include "runtime/core/status.h"

namespace fot::parallel {
namespace {

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        const auto b = item.find_first_not_of(" \t");
        const auto e = item.find_last_not_of(" \t");
        out.push_back(b == std::string::npos ? "" : item.substr(b, e - b + 1));
    }
    return out;
}

std::string rank_list(const std::vector<int>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
        out += i == 0 ? "" : i + 1 == r.size() ? " and " : ", ";
        out += std::to_string(r[i]);
    }
    return out;
}

}  // namespace

DeviceChoice select_cuda_device(const NodeInfo& node, int visible_devices, bool nccl) {
    const int n = node.local_size();
    FOT_CHECK(n >= 1 && node.local_rank >= 0 && node.local_rank < n,
              "select_cuda_device: local rank ", node.local_rank, " is not in [0, ", n, ")");
    FOT_CHECK(node.visible.empty() || static_cast<int>(node.visible.size()) == n,
              "select_cuda_device: ", node.visible.size(), " CUDA_VISIBLE_DEVICES entries for ", n,
              " local ranks");
    const int me_global = node.ranks[node.local_rank];
    FOT_CHECK(visible_devices >= 1, "rank ", me_global, " on node ", node.name,
              " sees no CUDA device (use --backend cpu, or check CUDA_VISIBLE_DEVICES and the "
              "driver)");
    auto env_of = [&](int i) { return node.visible.empty() ? std::string() : node.visible[i]; };

    // Device index and physical GPU of local rank i: numbered among the ranks with the same
    // CUDA_VISIBLE_DEVICES. Other ranks' device counts: their list's length when set, else
    // ours (same node, same driver).
    auto index_of = [&](int i, int count) {
        int k = 0;
        for (int j = 0; j < i; ++j) k += env_of(j) == env_of(i);
        return k % count;
    };
    auto count_of = [&](int i) {
        if (i == node.local_rank || env_of(i).empty()) return visible_devices;
        const int listed = static_cast<int>(split_list(env_of(i)).size());
        return listed > 0 ? listed : visible_devices;
    };
    auto gpu_of = [&](int i) {
        const int d = index_of(i, count_of(i));
        const auto list = split_list(env_of(i));
        return d < static_cast<int>(list.size()) ? list[d] : std::to_string(d);
    };

    DeviceChoice c;
    c.device = index_of(node.local_rank, visible_devices);
    const std::string mine = gpu_of(node.local_rank);
    std::vector<int> sharing;
    int sharers_local_first = -1, same_env = 0;
    for (int i = 0; i < n; ++i) {
        same_env += env_of(i) == env_of(node.local_rank);
        if (gpu_of(i) != mine) continue;
        sharing.push_back(node.ranks[i]);
        if (sharers_local_first < 0) sharers_local_first = i;
    }
    if (sharing.size() < 2) return c;
    const std::string what =
        str("ranks ", rank_list(sharing), " on node ", node.name, " would share GPU ", mine, " (",
            same_env, " ranks, ", visible_devices, " visible device",
            visible_devices == 1 ? "" : "s", ")");
    FOT_CHECK(!nccl, what,
              ": NCCL cannot put two ranks of one communicator on one GPU; run one rank per GPU "
              "(fewer ranks per node, e.g. mpirun -np ",
              visible_devices, " per node) or set CUDA_VISIBLE_DEVICES");
    if (sharers_local_first == node.local_rank) {
        c.warning = what +
                    ": allowed for pure data parallelism (tp x mp = 1), but the ranks "
                    "compete for the GPU's compute and memory";
    }
    return c;
}

}  // namespace fot::parallel
