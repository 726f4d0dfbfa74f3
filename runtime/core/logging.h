// Rank-prefixed logging to stderr.
//
// Every line is "[rank r/n] LEVEL: message" once set_log_rank() was called (multi-rank
// runs), or "fotrt LEVEL: message" before. The threshold comes from the environment variable
// FOT_LOG_LEVEL (error|warn|info|debug; default info) and can be overridden with
// set_log_level(). Thread-safe: each line is written with one call.
#pragma once

#include <sstream>
#include <string>

namespace fot {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_log_rank(int rank, int size);
void set_log_level(LogLevel level);
LogLevel log_level();
bool parse_log_level(const std::string& s, LogLevel* out);
// The "[rank r/n] " prefix, or "" in single-process runs.
std::string log_prefix();
void log_line(LogLevel level, const std::string& msg);

namespace detail {
class LogMessage {
  public:
    explicit LogMessage(LogLevel level) : level_(level) {}
    ~LogMessage() { log_line(level_, os_.str()); }
    std::ostringstream& stream() { return os_; }

  private:
    LogLevel level_;
    std::ostringstream os_;
};
}  // namespace detail

}  // namespace fot

// FOT_LOG(kInfo) << "loaded " << n << " tensors";
#define FOT_LOG(level)                                 \
    if (::fot::LogLevel::level > ::fot::log_level()) { \
    } else                                             \
        ::fot::detail::LogMessage(::fot::LogLevel::level).stream()
