// Runs the fotrt binary (or any command) in a shell and captures exit code, stdout, stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fot::testing {

struct RunResult {
    int code = -1;
    std::string out, err;
    // Lines of stderr, not counting info-level progress (the "loaded weights" line a run
    // prints before it meets bad input): an error must still be exactly one line.
    int err_lines() const {
        int n = 0;
        for (size_t pos = 0; pos < err.size();) {
            const size_t nl = err.find('\n', pos);
            if (nl == std::string::npos) break;
            n += err.substr(pos, nl - pos).find(" info: ") == std::string::npos;
            pos = nl + 1;
        }
        return n;
    }
};

inline std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A fresh temporary directory, removed by the destructor.
class TempDir {
  public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "fotrt-test-XXXXXX").string();
        path_ = ::mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

// `args` is appended to the fotrt path and run through /bin/sh.
inline RunResult run_fotrt(const std::string& args, const std::string& prefix = "") {
    TempDir tmp;
    const std::string cmd =
        prefix + std::string(FOTRT_EXE) + " " + args + " >" + (tmp / "out") + " 2>" + (tmp / "err");
    const int status = std::system(cmd.c_str());
    RunResult r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(tmp / "out");
    r.err = slurp(tmp / "err");
    return r;
}

}  // namespace fot::testing
