// MappedFile: a whole file mapped read-only into memory (RAII; move-only).
//
// The mapping lives as long as the object; pointers into it are valid until then. Opening
// fails with a fot::Error naming the path ("cannot open", "is a directory", mmap failure).
// An empty file maps to data() == nullptr, size() == 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fot {

class MappedFile {
  public:
    MappedFile() = default;
    // Maps `path` read-only. Throws fot::Error.
    static MappedFile open(const std::string& path);

    ~MappedFile();
    MappedFile(MappedFile&& o) noexcept;
    MappedFile& operator=(MappedFile&& o) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

  private:
    void release();
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

// Tells the kernel that this process is done with the mapped file bytes [p, p + n): the whole
// pages inside the range are dropped from this process's resident set (MADV_DONTNEED; the
// page cache keeps them, and a later read faults them back in from the file, so this is never
// a correctness issue, only a memory one). Used behind a copy out of a mapping so that peak
// RSS stays near the copies, not the copies plus the file. Best effort: errors are ignored.
void release_mapped_pages(const void* p, size_t n);

// Faults in the whole pages of [p, p + n) for writing in one call (MADV_POPULATE_WRITE,
// Linux 5.14+), before a copy fills them: one kernel walk instead of a fault per 4 KiB page.
// A no-op where the kernel lacks it (the copy then takes the faults as before).
void populate_for_write(void* p, size_t n);

}  // namespace fot
