// Helpers for the checkpoint I/O tests: temporary directories, whole-file I/O, builders for
// hand-made stored zip archives and torch-style pickles, rewriting a safetensors header, and
// running the fotrt binary with its exit code, stdout and stderr captured.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace fot::test {

namespace fs = std::filesystem;

using Bytes = std::vector<uint8_t>;

inline std::string golden_dir() {
    return std::string(FOT_TEST_DATA) + "/golden";
}
inline std::string fixture_dir(const std::string& name) {
    return golden_dir() + "/checkpoints/" + name;
}
inline std::string case_a_dir() {
    return golden_dir() + "/case_a";
}

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
  public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "fot_io_test_XXXXXX").string();
        char* p = ::mkdtemp(tmpl.data());
        if (p == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = p;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

inline Bytes read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in.good()) << path;
    return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const Bytes& b) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    ASSERT_TRUE(out.good()) << path;
}

inline void write_text(const std::string& path, const std::string& s) {
    write_bytes(path, Bytes(s.begin(), s.end()));
}

// Copies every file of `src` into a new folder `dst` (created), with write permission.
inline void copy_dir(const std::string& src, const std::string& dst) {
    fs::create_directories(dst);
    for (const auto& e : fs::directory_iterator(src)) {
        write_bytes(dst + "/" + e.path().filename().string(), read_bytes(e.path().string()));
    }
}

// Index of the first occurrence of `needle` in `hay`, or npos.
inline size_t find_bytes(const Bytes& hay, const std::string& needle, size_t from = 0) {
    if (needle.empty() || hay.size() < needle.size()) return std::string::npos;
    for (size_t i = from; i + needle.size() <= hay.size(); ++i) {
        if (std::equal(needle.begin(), needle.end(), hay.begin() + static_cast<ptrdiff_t>(i),
                       [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; })) {
            return i;
        }
    }
    return std::string::npos;
}

inline void put_le(Bytes& b, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

inline uint32_t crc32(const Bytes& data) {
    uint32_t c = 0xffffffffu;
    for (uint8_t byte : data) {
        c ^= byte;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

struct ZipFileEntry {
    std::string name;
    Bytes data;
    uint16_t method = 0;  // written as is; the data is never really compressed
};

// A stored zip archive as torch.save writes it; with `zip64` every size and offset goes
// through the ZIP64 extra field and end-of-central-directory records.
inline Bytes build_zip(const std::vector<ZipFileEntry>& entries, bool zip64 = false) {
    Bytes out, cd;
    for (const ZipFileEntry& e : entries) {
        const uint64_t lho = out.size();
        const uint32_t crc = crc32(e.data);
        put_le(out, 0x04034b50, 4);
        put_le(out, zip64 ? 45 : 20, 2);
        put_le(out, 0, 2);  // flags
        put_le(out, e.method, 2);
        put_le(out, 0, 4);  // time, date
        put_le(out, crc, 4);
        put_le(out, zip64 ? 0xffffffffu : e.data.size(), 4);
        put_le(out, zip64 ? 0xffffffffu : e.data.size(), 4);
        put_le(out, e.name.size(), 2);
        put_le(out, zip64 ? 20 : 0, 2);
        out.insert(out.end(), e.name.begin(), e.name.end());
        if (zip64) {
            put_le(out, 0x0001, 2);
            put_le(out, 16, 2);
            put_le(out, e.data.size(), 8);
            put_le(out, e.data.size(), 8);
        }
        out.insert(out.end(), e.data.begin(), e.data.end());

        put_le(cd, 0x02014b50, 4);
        put_le(cd, zip64 ? 45 : 20, 2);
        put_le(cd, zip64 ? 45 : 20, 2);
        put_le(cd, 0, 2);
        put_le(cd, e.method, 2);
        put_le(cd, 0, 4);
        put_le(cd, crc, 4);
        put_le(cd, zip64 ? 0xffffffffu : e.data.size(), 4);
        put_le(cd, zip64 ? 0xffffffffu : e.data.size(), 4);
        put_le(cd, e.name.size(), 2);
        put_le(cd, zip64 ? 28 : 0, 2);
        put_le(cd, 0, 2);  // comment
        put_le(cd, 0, 2);  // disk
        put_le(cd, 0, 2);  // internal attrs
        put_le(cd, 0, 4);  // external attrs
        put_le(cd, zip64 ? 0xffffffffu : lho, 4);
        cd.insert(cd.end(), e.name.begin(), e.name.end());
        if (zip64) {
            put_le(cd, 0x0001, 2);
            put_le(cd, 24, 2);
            put_le(cd, e.data.size(), 8);
            put_le(cd, e.data.size(), 8);
            put_le(cd, lho, 8);
        }
    }
    const uint64_t cd_offset = out.size();
    out.insert(out.end(), cd.begin(), cd.end());
    if (zip64) {
        const uint64_t rec = out.size();
        put_le(out, 0x06064b50, 4);
        put_le(out, 44, 8);
        put_le(out, 45, 2);
        put_le(out, 45, 2);
        put_le(out, 0, 4);
        put_le(out, 0, 4);
        put_le(out, entries.size(), 8);
        put_le(out, entries.size(), 8);
        put_le(out, cd.size(), 8);
        put_le(out, cd_offset, 8);
        put_le(out, 0x07064b50, 4);
        put_le(out, 0, 4);
        put_le(out, rec, 8);
        put_le(out, 1, 4);
    }
    put_le(out, 0x06054b50, 4);
    put_le(out, 0, 2);
    put_le(out, 0, 2);
    put_le(out, zip64 ? 0xffff : entries.size(), 2);
    put_le(out, zip64 ? 0xffff : entries.size(), 2);
    put_le(out, zip64 ? 0xffffffffu : cd.size(), 4);
    put_le(out, zip64 ? 0xffffffffu : cd_offset, 4);
    put_le(out, 0, 2);
    return out;
}

// Emits pickle opcodes (protocol 2) by name.
class PickleWriter {
  public:
    PickleWriter& op(uint8_t c) {
        b_.push_back(c);
        return *this;
    }
    PickleWriter& proto() { return op(0x80).op(2); }
    PickleWriter& global(const std::string& module, const std::string& name) {
        op('c');
        b_.insert(b_.end(), module.begin(), module.end());
        op('\n');
        b_.insert(b_.end(), name.begin(), name.end());
        return op('\n');
    }
    PickleWriter& str(const std::string& s) {
        op('X');
        put_le(b_, s.size(), 4);
        b_.insert(b_.end(), s.begin(), s.end());
        return *this;
    }
    PickleWriter& integer(int64_t v) {
        if (v >= 0 && v < 256) return op('K').op(static_cast<uint8_t>(v));
        if (v >= 0 && v < 65536) {
            op('M');
            put_le(b_, static_cast<uint64_t>(v), 2);
            return *this;
        }
        op(0x8a).op(8);
        put_le(b_, static_cast<uint64_t>(v), 8);
        return *this;
    }
    PickleWriter& mark() { return op('('); }
    PickleWriter& tuple() { return op('t'); }
    PickleWriter& empty_tuple() { return op(')'); }
    PickleWriter& reduce() { return op('R'); }
    PickleWriter& put(uint8_t i) { return op('q').op(i); }
    PickleWriter& get(uint8_t i) { return op('h').op(i); }
    PickleWriter& stop() { return op('.'); }
    // A tensor as torch.save writes it: _rebuild_tensor_v2((storage pid), offset, size,
    // stride, False, OrderedDict()).
    PickleWriter& tensor(const std::string& storage_class, const std::string& key,
                         int64_t storage_numel, int64_t offset, const std::vector<int64_t>& size,
                         const std::vector<int64_t>& stride) {
        global("torch._utils", "_rebuild_tensor_v2");
        mark();
        mark().str("storage").global("torch", storage_class).str(key).str("cpu");
        integer(storage_numel).tuple().op('Q');
        integer(offset);
        mark();
        for (int64_t s : size) integer(s);
        tuple();
        mark();
        for (int64_t s : stride) integer(s);
        tuple();
        op(0x89);  // NEWFALSE
        global("collections", "OrderedDict").empty_tuple().reduce();
        tuple();
        return reduce();
    }
    const Bytes& bytes() const { return b_; }

  private:
    Bytes b_;
};

// Rewrites the header of the safetensors file at `path` with `edit` applied to it; `extra`
// bytes are appended to the data section. Keeps the data section as it was.
template <typename Edit>
void rewrite_safetensors_header(const std::string& path, Edit edit, const Bytes& extra = {}) {
    Bytes b = read_bytes(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | b[static_cast<size_t>(i)];
    nlohmann::ordered_json h =
        nlohmann::ordered_json::parse(std::string(b.begin() + 8, b.begin() + 8 + n));
    edit(h);
    std::string text = h.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    Bytes out;
    put_le(out, text.size(), 8);
    out.insert(out.end(), text.begin(), text.end());
    out.insert(out.end(), b.begin() + 8 + static_cast<ptrdiff_t>(n), b.end());
    out.insert(out.end(), extra.begin(), extra.end());
    write_bytes(path, out);
}

struct RunResult {
    int exit_code = -1;
    std::string out, err;
};

inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') {
            q.append("'\\''");
        } else {
            q.push_back(c);
        }
    }
    q.push_back('\'');
    return q;
}

// Runs `FOTRT_EXE args...` with stdout/stderr captured through files in `tmp`.
inline RunResult run_fotrt(const std::vector<std::string>& args, const TempDir& tmp) {
    std::string cmd = shell_quote(FOTRT_EXE);
    for (const std::string& a : args) {
        cmd.push_back(' ');
        cmd.append(shell_quote(a));
    }
    const std::string out = tmp / "stdout.txt", err = tmp / "stderr.txt";
    cmd.append(" >").append(shell_quote(out)).append(" 2>").append(shell_quote(err));
    const int status = std::system(cmd.c_str());
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    Bytes o = read_bytes(out), e = read_bytes(err);
    r.out.assign(o.begin(), o.end());
    r.err.assign(e.begin(), e.end());
    return r;
}

}  // namespace fot::test
