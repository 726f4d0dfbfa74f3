#include "runtime/core/host_memory.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "runtime/core/status.h"

namespace fot {

namespace {

struct HostMemory {
    int64_t bytes = INT64_MAX;
    const char* source = "physical memory";
};

// A cgroup limit file holds a byte count or "max" (no limit); v1 reports "no limit" as a huge
// number, which the min() below ignores.
bool read_limit(const char* path, int64_t* out) {
    std::ifstream in(path);
    std::string s;
    if (!(in >> s) || s == "max") return false;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0) return false;
    *out = v;
    return true;
}

int64_t parse_size(const char* name, const char* text) {
    const std::string s = text;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    const std::string suffix = end ? std::string(end) : std::string();
    double scale = 1;
    if (suffix == "K" || suffix == "k") {
        scale = 1024.0;
    } else if (suffix == "M" || suffix == "m") {
        scale = 1024.0 * 1024;
    } else if (suffix == "G" || suffix == "g") {
        scale = 1024.0 * 1024 * 1024;
    } else if (suffix == "T" || suffix == "t") {
        scale = 1024.0 * 1024 * 1024 * 1024;
    } else {
        FOT_CHECK(suffix.empty(), name, "='", s,
                  "' is not a size (bytes, or a number with K, M, G or T)");
    }
    FOT_CHECK(end != s.c_str() && errno == 0 && v > 0 && v * scale < 9.2e18, name, "='", s,
              "' is not a positive size (bytes, or a number with K, M, G or T)");
    return static_cast<int64_t>(v * scale);
}

HostMemory find_host_memory() {
    HostMemory m;
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && pages <= INT64_MAX / page) {
        m.bytes = static_cast<int64_t>(pages) * page;
    }
    int64_t limit = 0;
    if ((read_limit("/sys/fs/cgroup/memory.max", &limit) ||
         read_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes", &limit)) &&
        limit < m.bytes) {
        m.bytes = limit;
        m.source = "the cgroup memory limit";
    }
    if (const char* env = std::getenv("FOT_HOST_MEMORY"); env && *env) {
        const int64_t v = parse_size("FOT_HOST_MEMORY", env);
        if (v < m.bytes) {
            m.bytes = v;
            m.source = "FOT_HOST_MEMORY";
        }
    }
    return m;
}

}  // namespace

int64_t env_size_bytes(const char* name, int64_t fallback) {
    const char* env = std::getenv(name);
    return env && *env ? parse_size(name, env) : fallback;
}

int64_t host_memory_bytes() {
    return find_host_memory().bytes;
}

std::string host_memory_source() {
    return find_host_memory().source;
}

std::string format_bytes(double n) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (n >= 1024 && u < 6) {
        n /= 1024;
        ++u;
    }
    char buf[48];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", n, units[u]);
    return buf;
}

}  // namespace fot
