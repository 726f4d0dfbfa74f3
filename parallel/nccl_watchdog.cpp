#include "parallel/nccl_watchdog.h"

#include <chrono>
#include <exception>
#include <iomanip>
#include <sstream>

#include "runtime/core/status.h"

namespace fot::parallel {
namespace {

using Clock = std::chrono::steady_clock;

std::string seconds_str(double s) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(s < 10 ? 2 : 0) << s;
    return os.str();
}

}  // namespace

std::string describe_nccl_work(const std::string& op, const std::string& detail, int64_t count,
                               const char* dtype, int64_t bytes, const std::string& group, int rank,
                               int size) {
    return str(op, "(", detail, detail.empty() ? "" : ", ", count, " x ", dtype, " = ", bytes,
               " bytes) on the nccl ", group, " group (rank ", rank, " of ", size, ")");
}

std::string wait_for_work(const WatchedWork& work, const WatchSources& sources, double timeout_s,
                          const std::atomic<bool>* cancel, double poll_s) {
    const auto start = Clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    auto fail = [&](const std::string& why) {
        if (sources.abort) sources.abort();
        return str(work.what, " ", why, "; aborted the NCCL communicators of this rank");
    };
    for (uint64_t it = 0;; ++it) {
        std::string error;
        try {
            if (work.query_done()) return "";
            if (sources.query_async_error) error = sources.query_async_error();
        } catch (const std::exception& e) {
            error = e.what();
        }
        if (!error.empty()) {
            return fail(str("failed after ", seconds_str(elapsed()), " s: ", error));
        }
        if (timeout_s > 0 && elapsed() > timeout_s) {
            return fail(str("did not complete within ", timeout_s,
                            " s (FOT_COLLECTIVE_TIMEOUT): another rank is stuck, has died or "
                            "called a different collective"));
        }
        if (cancel && cancel->load()) return "";
        // Spin briefly when waiting in place (collectives are usually short), then sleep.
        if (poll_s < 1e-4 && it < 64) continue;
        std::this_thread::sleep_for(std::chrono::duration<double>(poll_s));
    }
}

WorkWatchdog::WorkWatchdog(WatchSources sources, FailureHandler on_failure)
    : sources_(std::move(sources)), on_failure_(std::move(on_failure)) {
    thread_ = std::thread([this] { run(); });
}

WorkWatchdog::~WorkWatchdog() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void WorkWatchdog::watch(WatchedWork work, double timeout_s) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.emplace_back(std::move(work), timeout_s);
    }
    cv_.notify_one();
}

int64_t WorkWatchdog::pending() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(queue_.size()) + in_flight_;
}

void WorkWatchdog::run() {
    for (;;) {
        std::pair<WatchedWork, double> item;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return stop_.load() || !queue_.empty(); });
            if (stop_) return;
            item = std::move(queue_.front());
            queue_.pop_front();
            in_flight_ = 1;
        }
        const std::string failure = wait_for_work(item.first, sources_, item.second, &stop_, 1e-3);
        {
            std::lock_guard<std::mutex> lock(mu_);
            in_flight_ = 0;
        }
        if (!failure.empty()) {
            on_failure_(failure);
            return;
        }
    }
}

}  // namespace fot::parallel
