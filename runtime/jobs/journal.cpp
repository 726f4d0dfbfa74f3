#include "runtime/jobs/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/core/logging.h"
#include "runtime/core/status.h"

namespace fot {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMagic = "fotrt-journal v1 ";

void write_all(int fd, const char* data, size_t n, const std::string& path) {
    while (n > 0) {
        ssize_t w = ::write(fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        FOT_CHECK(w > 0, "write error on ", path, ": ", std::strerror(errno));
        data += w;
        n -= static_cast<size_t>(w);
    }
}

void sync_fd(int fd, const std::string& path) {
    FOT_CHECK(::fdatasync(fd) == 0, "cannot flush ", path, " to disk: ", std::strerror(errno));
}

int open_append(const std::string& path, bool truncate) {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0);
    int fd = ::open(path.c_str(), flags, 0644);
    FOT_CHECK(fd >= 0, "cannot open ", path, " for writing: ", std::strerror(errno));
    return fd;
}

// The first key whose value differs between two fingerprints, for the mismatch message:
// changed values first (in the recorded order), then added or removed keys.
std::string first_difference(const std::string& a, const std::string& b) {
    nlohmann::ordered_json ja, jb;
    try {
        ja = nlohmann::ordered_json::parse(a);
        jb = nlohmann::ordered_json::parse(b);
    } catch (const std::exception&) {
        return "the job description";
    }
    for (const auto& [k, v] : ja.items()) {
        if (jb.contains(k) && jb[k] != v)
            return str(k, " (was ", v.dump(), ", now ", jb[k].dump(), ")");
    }
    for (const auto& [k, v] : jb.items()) {
        if (!ja.contains(k)) return str(k, " (not recorded before, now ", v.dump(), ")");
    }
    for (const auto& [k, v] : ja.items()) {
        if (!jb.contains(k)) return str(k, " (was ", v.dump(), ", now absent)");
    }
    return "the job description";
}

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

std::string this_host() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "an unknown host";
    return buf;
}

// The first line of an open file, for the holder of a lock.
std::string read_line(int fd) {
    char buf[512];
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return "";
    std::string s(buf, static_cast<size_t>(n));
    s = s.substr(0, s.find('\n'));
    for (char& c : s) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    }
    return s;
}

}  // namespace

OutputLock::OutputLock(const std::string& lock_path, const std::string& what) : path_(lock_path) {
    // A job that ends removes the lock file while holding the lock; a job that opened the old
    // file just before then locks an unlinked inode that no one else sees, so the lock only
    // counts when the path still names the locked file.
    for (int attempt = 0; attempt < 100; ++attempt) {
        const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        FOT_CHECK(fd >= 0, "cannot create the lock file ", path_, " of the ", what, ": ",
                  std::strerror(errno));
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            const std::string holder = read_line(fd);
            ::close(fd);
            if (err == EINTR) continue;
            if (err == EWOULDBLOCK) {
                FOT_THROW(what, " is in use by another job (",
                          holder.empty() ? std::string("a job that is starting") : holder,
                          "; lock file ", path_,
                          "): two jobs writing one output would mix their records; wait for "
                          "that job to end or choose another --output");
            }
            if (err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) {
                FOT_LOG(kWarn) << "cannot lock " << path_ << " (" << std::strerror(err)
                               << ": the file system has no flock); make sure no other job "
                                  "writes "
                               << what;
                return;
            }
            FOT_THROW("cannot lock ", path_, " of the ", what, ": ", std::strerror(err));
        }
        struct stat locked {};
        struct stat named {};
        if (::fstat(fd, &locked) == 0 && ::stat(path_.c_str(), &named) == 0 &&
            locked.st_dev == named.st_dev && locked.st_ino == named.st_ino) {
            fd_ = fd;
            const std::string holder =
                str("pid ", ::getpid(), " on host ", this_host(), ", started ", utc_now(), "\n");
            if (::ftruncate(fd_, 0) == 0) {
                // Best effort: the lock, not this text, is what excludes the other job.
                [[maybe_unused]] ssize_t w = ::pwrite(fd_, holder.data(), holder.size(), 0);
            }
            return;
        }
        ::close(fd);
    }
    FOT_THROW("cannot lock ", path_, " of the ", what,
              ": the lock file keeps being replaced by other processes");
}

OutputLock::~OutputLock() {
    if (fd_ < 0) return;
    ::unlink(path_.c_str());  // while still holding the lock (see the constructor)
    ::close(fd_);
}

std::vector<std::string> record_log_files(const std::string& out_path, bool journal) {
    std::vector<std::string> files = {out_path};
    if (journal) files.push_back(out_path + ".journal");
    files.push_back(out_path + ".lock");
    return files;
}

RecordLog::RecordLog(const std::string& out_path, const RecordLogOptions& opts)
    : path_(out_path), journal_path_(out_path + ".journal"), journaled_(opts.journal) {
    FOT_CHECK(!out_path.empty(), "no output file given (--output)");
    FOT_CHECK(opts.fingerprint.find('\n') == std::string::npos,
              "RecordLog: the fingerprint must be one line");
    const fs::path parent = fs::path(out_path).parent_path();
    std::error_code ec;
    FOT_CHECK(parent.empty() || fs::is_directory(parent, ec), "cannot write ", out_path,
              ": directory ", parent.string(), " does not exist");
    if (const char* crash = std::getenv("FOT_BATCH_CRASH"); crash && *crash) {
        std::string spec = crash;
        const size_t colon = spec.find(':');
        FOT_CHECK(colon != std::string::npos, "FOT_BATCH_CRASH=", spec,
                  " must be N:output|partial|journal");
        crash_at_ = std::stoll(spec.substr(0, colon));
        crash_point_ = spec.substr(colon + 1);
        FOT_CHECK(
            crash_point_ == "output" || crash_point_ == "partial" || crash_point_ == "journal",
            "FOT_BATCH_CRASH=", spec, " must be N:output|partial|journal");
    }
    // Before anything below truncates, removes or appends to the output.
    lock_ = std::make_unique<OutputLock>(path_ + ".lock", "output " + path_);
    if (!journaled_) {
        out_fd_ = open_append(path_, /*truncate=*/true);
        return;
    }
    if (opts.restart) {
        fs::remove(journal_path_, ec);
        fs::remove(path_, ec);
    }
    if (fs::exists(journal_path_, ec)) {
        resume(opts);
    } else {
        FOT_CHECK(!fs::exists(path_, ec) || fs::file_size(path_, ec) == 0, "output ", path_,
                  " exists but has no journal ", journal_path_,
                  " (it is not the output of an interrupted job); remove it, choose another "
                  "--output, or pass --restart to overwrite it");
        open_fresh(opts);
    }
}

RecordLog::~RecordLog() {
    if (out_fd_ >= 0) ::close(out_fd_);
    if (journal_fd_ >= 0) ::close(journal_fd_);
}

void RecordLog::open_fresh(const RecordLogOptions& opts) {
    out_fd_ = open_append(path_, /*truncate=*/true);
    sync_fd(out_fd_, path_);
    journal_fd_ = open_append(journal_path_, /*truncate=*/true);
    const std::string header = kMagic + opts.fingerprint + "\n";
    write_all(journal_fd_, header.data(), header.size(), journal_path_);
    sync_fd(journal_fd_, journal_path_);
}

void RecordLog::resume(const RecordLogOptions& opts) {
    std::string text;
    {
        std::ifstream in(journal_path_, std::ios::binary);
        FOT_CHECK(in, "cannot read journal ", journal_path_);
        std::stringstream ss;
        ss << in.rdbuf();
        text = ss.str();
    }
    const size_t header_end = text.find('\n');
    if (header_end == std::string::npos) {
        // Killed while the journal was being created: no record can have been journaled.
        open_fresh(opts);
        return;
    }
    FOT_CHECK(header_end != std::string::npos && text.compare(0, std::strlen(kMagic), kMagic) == 0,
              "journal ", journal_path_,
              " has no valid header (not a fotrt journal, or cut before its first line was "
              "written); remove it and its output, or pass --restart");
    const std::string recorded = text.substr(std::strlen(kMagic), header_end - std::strlen(kMagic));
    if (recorded != opts.fingerprint) {
        FOT_THROW("journal ", journal_path_,
                  " belongs to a different job: ", first_difference(recorded, opts.fingerprint),
                  "; rerun with the original options, or pass --restart to start over");
    }
    // Complete entries only: a line without its newline was cut by the kill.
    size_t pos = header_end + 1, valid_end = pos;
    int64_t last_offset = 0;
    int64_t line_no = 1;
    while (pos < text.size()) {
        const size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) break;
        ++line_no;
        std::istringstream ls(text.substr(pos, nl - pos));
        int64_t index = -1, ok = -1, offset = -1;
        std::string rest;
        ls >> index >> ok >> offset;
        FOT_CHECK(ls && !(ls >> rest) && index >= 0 && (ok == 0 || ok == 1) && offset > last_offset,
                  "journal ", journal_path_, ":", line_no,
                  " is corrupt (expected 'index ok end_offset' with growing offsets); remove the "
                  "journal and its output, or pass --restart");
        FOT_CHECK(done_.insert(index).second, "journal ", journal_path_, ":", line_no,
                  " records document ", index, " twice; pass --restart to start over");
        if (ok == 0) ++errors_;
        last_offset = offset;
        pos = valid_end = nl + 1;
    }
    resumed_ = static_cast<int64_t>(done_.size());

    std::error_code ec;
    const int64_t out_size =
        fs::exists(path_, ec) ? static_cast<int64_t>(fs::file_size(path_, ec)) : 0;
    FOT_CHECK(out_size >= last_offset, "output ", path_, " is shorter (", out_size,
              " bytes) than its journal ", journal_path_, " records (", last_offset,
              " bytes): it was modified; pass --restart to start over");
    out_fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    FOT_CHECK(out_fd_ >= 0, "cannot open ", path_, " for writing: ", std::strerror(errno));
    FOT_CHECK(::ftruncate(out_fd_, last_offset) == 0, "cannot truncate ", path_, ": ",
              std::strerror(errno));
    FOT_CHECK(::lseek(out_fd_, last_offset, SEEK_SET) == last_offset, "cannot seek in ", path_);
    sync_fd(out_fd_, path_);
    out_size_ = last_offset;

    journal_fd_ = ::open(journal_path_.c_str(), O_WRONLY | O_CLOEXEC);
    FOT_CHECK(journal_fd_ >= 0, "cannot open ", journal_path_,
              " for writing: ", std::strerror(errno));
    FOT_CHECK(::ftruncate(journal_fd_, static_cast<off_t>(valid_end)) == 0, "cannot truncate ",
              journal_path_, ": ", std::strerror(errno));
    FOT_CHECK(::lseek(journal_fd_, static_cast<off_t>(valid_end), SEEK_SET) ==
                  static_cast<off_t>(valid_end),
              "cannot seek in ", journal_path_);
    sync_fd(journal_fd_, journal_path_);
    if (out_size != last_offset || valid_end != text.size()) {
        FOT_LOG(kInfo) << "resuming " << path_ << ": dropped " << out_size - last_offset
                       << " bytes of unjournaled output";
    }
}

void RecordLog::maybe_crash(const char* point) {
    if (crash_at_ == appended_ && crash_point_ == point) {
        std::fflush(nullptr);
        std::raise(SIGKILL);
    }
}

void RecordLog::append(int64_t index, bool ok, const std::string& line) {
    FOT_CHECK(line.find('\n') == std::string::npos, "RecordLog: a record must be one line");
    FOT_CHECK(done_.insert(index).second, "RecordLog: record ", index, " written twice");
    if (!ok) ++errors_;
    ++appended_;
    std::string buf = line + "\n";
    if (crash_at_ == appended_ && crash_point_ == "partial") {
        write_all(out_fd_, buf.data(), buf.size() / 2, path_);
        sync_fd(out_fd_, path_);
        maybe_crash("partial");
    }
    write_all(out_fd_, buf.data(), buf.size(), path_);
    out_size_ += static_cast<int64_t>(buf.size());
    if (!journaled_) return;
    sync_fd(out_fd_, path_);
    maybe_crash("output");
    const std::string entry = str(index, ' ', ok ? 1 : 0, ' ', out_size_, '\n');
    write_all(journal_fd_, entry.data(), entry.size(), journal_path_);
    sync_fd(journal_fd_, journal_path_);
    maybe_crash("journal");
}

}  // namespace fot
