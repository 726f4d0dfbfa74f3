// host_memory_bytes(): how much host memory this process may plan to use, so that a model
// that cannot fit is refused with a message before its buffers are allocated (and zeroed:
// with overcommit the allocation itself succeeds and the kernel's OOM killer ends the
// process later, without a word).
#pragma once

#include <cstdint>
#include <string>

namespace fot {

// The smallest of: physical memory, the cgroup memory limit (v2 memory.max or v1
// memory.limit_in_bytes) when there is one, and FOT_HOST_MEMORY when set (bytes, or a number
// with K, M, G or T: powers of 1024). A malformed FOT_HOST_MEMORY throws fot::Error naming it.
int64_t host_memory_bytes();

// Where that number came from, for messages: "physical memory", "the cgroup memory limit"
// or "FOT_HOST_MEMORY".
std::string host_memory_source();

// The size in environment variable `name` (bytes, or a number with K, M, G or T), or
// `fallback` when it is unset or empty. A malformed value throws fot::Error naming it.
int64_t env_size_bytes(const char* name, int64_t fallback);

// "1.50 GiB"
std::string format_bytes(double bytes);

}  // namespace fot
