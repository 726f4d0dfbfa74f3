// A minimal, read-only ZIP reader for torch.save archives held in memory (an mmap).
//
// Reads the end-of-central-directory record (ZIP64 records included), the central
// directory and each entry's local header, bounds-checking every offset and length against
// the buffer. Only STORED (uncompressed, unencrypted) entries can be read: torch.save never
// compresses, and a stored entry can be used in place without copying. CRC-32 values are
// not verified: checking them would read every byte of a multi-GB checkpoint at open time,
// and the tensor-level checks (sizes, shapes, dtypes) catch structural damage; flipped bits
// inside tensor data are not detected. Errors are one-line fot::Error messages starting with
// `origin` (the archive's path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace fot {

struct ZipEntry {
    std::string name;
    uint16_t method = 0;  // 0 = stored
    uint16_t flags = 0;   // general-purpose bit flags
    uint64_t compressed_size = 0;
    uint64_t size = 0;  // uncompressed size
    uint64_t local_header_offset = 0;
};

class ZipReader {
  public:
    // Parses the directory of the archive in [data, data + size). Throws fot::Error.
    ZipReader(const uint8_t* data, size_t size, std::string origin);

    const std::vector<ZipEntry>& entries() const { return entries_; }
    // nullptr when there is no entry with that exact name.
    const ZipEntry* find(const std::string& name) const;
    // The bytes of a stored entry, validated against its local header and the buffer.
    // Throws fot::Error for compressed or encrypted entries.
    const uint8_t* entry_data(const ZipEntry& e) const;
    const std::string& origin() const { return origin_; }

  private:
    const uint8_t* data_;
    size_t size_;
    std::string origin_;
    std::vector<ZipEntry> entries_;
    std::unordered_map<std::string, size_t> by_name_;  // index into entries_
};

}  // namespace fot
