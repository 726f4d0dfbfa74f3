// Files written under a temporary name (OUT.partial) and renamed into place when complete:
// a job stopped by a signal (SIGTERM from Slurm or a user, SIGINT, SIGHUP) must not leave
// them behind. TempFileGuard registers the name for its lifetime; the handler installed by
// install_temp_file_cleanup() removes every registered file and then dies of the same signal
// (so the exit status still says "killed by SIGTERM": 143 in a shell). SIGKILL cannot be
// caught; the next run overwrites a stale .partial.
#pragma once

#include <string>

namespace fot {

// Installs the handler for SIGTERM, SIGINT and SIGHUP (once; later calls do nothing). A
// command with its own handler (fotrt serve) installs it after this one.
void install_temp_file_cleanup();

class TempFileGuard {
  public:
    // At most 16 guards at a time and paths under 4 KiB; beyond that the file is simply not
    // cleaned up on a signal (a leftover, never an error).
    explicit TempFileGuard(const std::string& path);
    ~TempFileGuard();
    TempFileGuard(const TempFileGuard&) = delete;
    TempFileGuard& operator=(const TempFileGuard&) = delete;

  private:
    int slot_ = -1;
};

}  // namespace fot
