// RecordLog: the JSONL output of a corpus job, optionally with a journal that makes the job
// resumable after a kill at any point (kill -9, node failure, time limit).
//
// Records are appended to OUT one line each. With a journal (OUT.journal, append-only), each
// record is followed by a journal line "index ok end_offset" (ok = 1, or 0 for an error
// record; end_offset = the size of OUT after the record); the output line is written and
// fsync'd before its journal line, and the journal line is fsync'd before append() returns. So
// a journaled record is always complete in OUT. Reopening after a kill truncates OUT to the
// last journaled record (dropping a partial or unjournaled line) and the journal to its last
// complete line, and done() lists the journaled indices: a job that skips them and appends
// the rest writes every record exactly once.
//
// The journal starts with a header holding the job's fingerprint (the options that decide the
// results); resuming with a different fingerprint is an error naming the first difference.
//
// A RecordLog holds an advisory lock on OUT.lock (an OutputLock) from before it touches OUT
// until it is destroyed: a second job on the same output (a requeued Slurm job overlapping
// the first) is refused at start, naming the holder, instead of interleaving its records.
// Only rank 0 uses a RecordLog. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace fot {

// An exclusive advisory lock (flock) on `lock_path`, held while the object lives. The file
// holds "pid P on host H, started T" for the message another job gets; it is removed on
// release (a lock file left by a killed job is stale: the kernel dropped its lock, and the
// next job takes it over). On a file system without flock the job goes on unlocked, with a
// warning.
class OutputLock {
  public:
    // Throws fot::Error naming `what` (e.g. "output out.jsonl") and the holder when another
    // process holds the lock.
    OutputLock(const std::string& lock_path, const std::string& what);
    ~OutputLock();
    OutputLock(const OutputLock&) = delete;
    OutputLock& operator=(const OutputLock&) = delete;

  private:
    std::string path_;
    int fd_ = -1;
};

// The files a RecordLog on `out_path` writes: OUT, OUT.journal (when journaled) and OUT.lock.
std::vector<std::string> record_log_files(const std::string& out_path, bool journal);

struct RecordLogOptions {
    bool journal = true;   // false: plain output, truncated at open (fotrt score)
    bool restart = false;  // discard an existing output and journal
    // A one-line JSON object describing the job; stored in the journal header.
    std::string fingerprint = "{}";
};

class RecordLog {
  public:
    // Opens (creates, or resumes from the journal) `out_path`. Throws fot::Error naming the
    // file when it cannot be created, when OUT exists without a journal (not a resumable job's
    // output; pass restart), or when the journal is corrupt or from another job.
    RecordLog(const std::string& out_path, const RecordLogOptions& opts);
    ~RecordLog();
    RecordLog(const RecordLog&) = delete;
    RecordLog& operator=(const RecordLog&) = delete;

    // Whether record `index` was journaled by an earlier run.
    bool done(int64_t index) const { return done_.count(index) != 0; }
    // Journaled records (all runs) and how many of them were error records.
    int64_t records() const { return static_cast<int64_t>(done_.size()); }
    int64_t error_records() const { return errors_; }
    // Records found in the journal when it was opened.
    int64_t resumed() const { return resumed_; }

    // Appends one record (a JSON object without newline) and journals it. Throws fot::Error
    // on a write error (disk full) and when `index` was already written.
    void append(int64_t index, bool ok, const std::string& line);

    const std::string& path() const { return path_; }
    const std::string& journal_path() const { return journal_path_; }

  private:
    void open_fresh(const RecordLogOptions& opts);
    void resume(const RecordLogOptions& opts);
    void maybe_crash(const char* point);

    std::string path_, journal_path_;
    std::unique_ptr<OutputLock> lock_;  // first member to be set, last to go
    bool journaled_ = true;
    int out_fd_ = -1;
    int journal_fd_ = -1;
    int64_t out_size_ = 0;
    std::unordered_set<int64_t> done_;
    int64_t errors_ = 0;
    int64_t resumed_ = 0;
    // Test hook (FOT_BATCH_CRASH="N:output|partial|journal"): SIGKILL this process at the Nth
    // append of this run, after the output line, in the middle of it, or after the journal line.
    int64_t crash_at_ = -1;
    std::string crash_point_;
    int64_t appended_ = 0;
};

}  // namespace fot
