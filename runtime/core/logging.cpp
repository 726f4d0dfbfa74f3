#include "runtime/core/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace fot {
namespace {

LogLevel level_from_env() {
    const char* env = std::getenv("FOT_LOG_LEVEL");
    LogLevel level = LogLevel::kInfo;
    if (env && !parse_log_level(env, &level)) {
        std::fprintf(stderr, "fotrt warn: FOT_LOG_LEVEL=%s is not one of error|warn|info|debug\n",
                     env);
    }
    return level;
}

std::atomic<int> g_rank{-1};
std::atomic<int> g_size{0};
std::atomic<int> g_level{static_cast<int>(level_from_env())};

const char* level_name(LogLevel l) {
    switch (l) {
        case LogLevel::kError:
            return "error";
        case LogLevel::kWarn:
            return "warn";
        case LogLevel::kInfo:
            return "info";
        case LogLevel::kDebug:
            return "debug";
    }
    return "";
}

}  // namespace

void set_log_rank(int rank, int size) {
    g_rank = rank;
    g_size = size;
}

void set_log_level(LogLevel level) {
    g_level = static_cast<int>(level);
}

LogLevel log_level() {
    return static_cast<LogLevel>(g_level.load());
}

bool parse_log_level(const std::string& s, LogLevel* out) {
    if (s == "error")
        *out = LogLevel::kError;
    else if (s == "warn" || s == "warning")
        *out = LogLevel::kWarn;
    else if (s == "info")
        *out = LogLevel::kInfo;
    else if (s == "debug")
        *out = LogLevel::kDebug;
    else
        return false;
    return true;
}

std::string log_prefix() {
    int r = g_rank.load();
    if (r < 0) return "";
    return "[rank " + std::to_string(r) + "/" + std::to_string(g_size.load()) + "] ";
}

void log_line(LogLevel level, const std::string& msg) {
    std::string p = log_prefix();
    std::string line =
        (p.empty() ? std::string("fotrt ") : p) + level_name(level) + ": " + msg + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

}  // namespace fot
