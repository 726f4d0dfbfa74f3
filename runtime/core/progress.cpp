#include "runtime/core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "runtime/core/logging.h"
#include "runtime/core/status.h"

namespace fot {

namespace {
constexpr double kTerminalRedraw = 0.5;  // seconds between redraws of a terminal line
constexpr double kPlainInterval = 5.0;
}  // namespace

ProgressLine::ProgressLine(std::string label, std::string unit, int64_t total, bool enabled)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) == 1),
      interval_s_(default_interval()) {}

ProgressLine::~ProgressLine() {
    try {
        finish();
    } catch (...) {
        // A progress line never turns into an error.
    }
}

double ProgressLine::default_interval() {
    if (const char* e = std::getenv("FOT_PROGRESS_INTERVAL")) {
        char* end = nullptr;
        const double v = std::strtod(e, &end);
        if (end != e && *end == '\0' && std::isfinite(v) && v > 0) return v;
    }
    return kPlainInterval;
}

std::string ProgressLine::format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    const int64_t t = static_cast<int64_t>(std::llround(s));
    char buf[64];
    if (t >= 3600) {
        std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(t / 3600),
                      static_cast<long long>(t % 3600 / 60));
    } else if (t >= 60) {
        std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(t / 60),
                      static_cast<long long>(t % 60));
    } else {
        std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(t));
    }
    return buf;
}

std::string ProgressLine::format_count(double v) {
    char buf[64];
    if (v >= 1e6) {
        std::snprintf(buf, sizeof(buf), "%.1fM", v / 1e6);
    } else if (v >= 1e4) {
        std::snprintf(buf, sizeof(buf), "%.1fk", v / 1e3);
    } else {
        std::snprintf(buf, sizeof(buf), "%.0f", v);
    }
    return buf;
}

std::string ProgressLine::text() const {
    const double elapsed = timer_.seconds();
    const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
    const double eta = done_ >= total_ ? 0.0
                       : rate > 0      ? static_cast<double>(total_ - done_) / rate
                                       : -1.0;
    return str(label_, ": ", format_count(static_cast<double>(done_)), "/",
               format_count(static_cast<double>(total_)), " ", unit_, ", ", format_count(rate), " ",
               unit_, "/s, elapsed ", format_duration(elapsed), ", ETA ", format_duration(eta));
}

void ProgressLine::print(bool final) {
    if (tty_) {
        std::fprintf(stderr, "\r\033[K%s%s", text().c_str(), final ? "\n" : "");
        std::fflush(stderr);
    } else {
        FOT_LOG(kInfo) << text();
    }
    printed_ = true;
    last_print_ = timer_.seconds();
}

void ProgressLine::update(int64_t done) {
    if (!enabled_ || finished_) return;
    done_ = done;
    const double now = timer_.seconds();
    if (now - last_print_ >= (tty_ ? kTerminalRedraw : interval_s_)) print(false);
}

void ProgressLine::finish() {
    if (finished_) return;
    finished_ = true;
    if (!enabled_ || !printed_) return;
    print(true);
}

}  // namespace fot
