#include "runtime/core/temp_files.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace fot {

namespace {

// Fixed storage, so that the handler only reads memory and calls unlink() (async-signal-safe).
constexpr int kSlots = 16;
constexpr size_t kMaxPath = 4096;
char g_paths[kSlots][kMaxPath];
std::atomic<int> g_used[kSlots];  // 0 free, 1 being filled, 2 registered

extern "C" void remove_temp_files_and_die(int sig) {
    for (int i = 0; i < kSlots; ++i) {
        if (g_used[i].load() == 2) ::unlink(g_paths[i]);
    }
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

}  // namespace

void install_temp_file_cleanup() {
    static const bool installed = [] {
        struct sigaction sa {};
        sa.sa_handler = remove_temp_files_and_die;
        sigemptyset(&sa.sa_mask);
        for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
            struct sigaction old {};
            // Keep an ignored signal ignored (nohup) and a handler someone else set.
            if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
                ::sigaction(sig, &sa, nullptr);
            }
        }
        return true;
    }();
    (void)installed;
}

TempFileGuard::TempFileGuard(const std::string& path) {
    if (path.size() >= kMaxPath) return;
    for (int i = 0; i < kSlots; ++i) {
        int expected = 0;
        if (g_used[i].compare_exchange_strong(expected, 1)) {
            std::memcpy(g_paths[i], path.c_str(), path.size() + 1);
            g_used[i].store(2);
            slot_ = i;
            return;
        }
    }
}

TempFileGuard::~TempFileGuard() {
    if (slot_ >= 0) g_used[slot_].store(0);
}

}  // namespace fot
