#include "runtime/jobs/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "runtime/core/logging.h"
#include "runtime/core/progress.h"
#include "runtime/core/status.h"

namespace fot {

Progress::Progress(std::string label, int64_t total_docs, int64_t total_cost, double interval_s,
                   bool quiet)
    : label_(std::move(label)),
      total_docs_(total_docs),
      total_cost_(total_cost),
      interval_s_(interval_s),
      tty_(::isatty(STDERR_FILENO) == 1),
      quiet_(quiet) {}

std::string Progress::format_rate(double r) {
    char buf[64];
    if (r >= 1e6) {
        std::snprintf(buf, sizeof(buf), "%.1fM", r / 1e6);
    } else if (r >= 1e3) {
        std::snprintf(buf, sizeof(buf), "%.1fk", r / 1e3);
    } else {
        std::snprintf(buf, sizeof(buf), "%.0f", r);
    }
    return buf;
}

std::string Progress::line() const {
    const double elapsed = timer_.seconds();
    const double rate = elapsed > 0 ? static_cast<double>(tokens_) / elapsed : 0.0;
    const double eta_s = docs_ >= total_docs_       ? 0.0
                         : cost_ > 0 && elapsed > 0 ? static_cast<double>(total_cost_ - cost_) *
                                                          elapsed / static_cast<double>(cost_)
                                                    : -1.0;
    const std::string eta = ProgressLine::format_duration(eta_s);
    return str(label_, ": ", docs_, "/", total_docs_, " documents", errors_ ? " (" : "",
               errors_ ? std::to_string(errors_) + " errors)" : "", ", ", format_rate(rate),
               " tokens/s, elapsed ", ProgressLine::format_duration(elapsed), ", ETA ", eta);
}

void Progress::print(bool final) {
    if (tty_) {
        std::fprintf(stderr, "\r\033[K%s%s", line().c_str(), final ? "\n" : "");
        std::fflush(stderr);
        printed_tty_ = !final;
    } else {
        FOT_LOG(kInfo) << line();
    }
    last_print_ = timer_.seconds();
}

void Progress::update(int64_t docs, int64_t cost, int64_t tokens, int64_t errors) {
    docs_ = docs;
    cost_ = cost;
    tokens_ = tokens;
    errors_ = errors;
    if (quiet_) return;
    const double now = timer_.seconds();
    if (tty_) {
        if (now - last_print_ >= 0.5) print(false);
    } else if (interval_s_ > 0 && now - last_print_ >= interval_s_) {
        print(false);
    }
}

void Progress::finish() {
    if (!quiet_ && (tty_ || interval_s_ > 0)) print(true);
}

}  // namespace fot
