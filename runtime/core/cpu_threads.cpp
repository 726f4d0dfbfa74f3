#include "runtime/core/cpu_threads.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>

namespace fot {

int default_thread_count(int allowed, int hardware, int node_ranks) {
    allowed = std::max(1, allowed);
    hardware = std::max(allowed, hardware);
    node_ranks = std::max(1, node_ranks);
    // Bound by a launcher (mpirun --bind-to, taskset, a cgroup cpuset): the binding is the
    // share. Unbound: split the cores among the node's ranks.
    if (allowed < hardware) return allowed;
    return std::max(1, allowed / node_ranks);
}

int hardware_cpu_count() {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

int allowed_cpu_count() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return hardware_cpu_count();
    const int n = CPU_COUNT(&set);
    return n > 0 ? n : hardware_cpu_count();
}

}  // namespace fot
