#include "runtime/io/zip_reader.h"

#include <algorithm>
#include <utility>

#include "runtime/core/status.h"
#include "runtime/io/quote.h"

namespace fot {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kEocd64LocatorSig = 0x07064b50;
constexpr uint32_t kEocd64Sig = 0x06064b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kEocd64LocatorSize = 20;
constexpr size_t kEocd64Size = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr uint16_t kZip64ExtraId = 0x0001;

uint16_t u16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t u32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t u64(const uint8_t* p) {
    return u32(p) | (static_cast<uint64_t>(u32(p + 4)) << 32);
}

// True when [offset, offset + len) lies inside a buffer of `size` bytes (overflow-safe).
bool in_bounds(uint64_t offset, uint64_t len, uint64_t size) {
    return offset <= size && len <= size - offset;
}

// Replaces 0xFFFF.. placeholders of a central directory entry with the ZIP64 extra field.
void apply_zip64_extra(const uint8_t* extra, size_t extra_len, bool need_size, bool need_csize,
                       bool need_offset, ZipEntry* e, const std::string& where) {
    size_t pos = 0;
    while (pos + 4 <= extra_len) {
        const uint16_t id = u16(extra + pos);
        const uint16_t len = u16(extra + pos + 2);
        FOT_CHECK(pos + 4 + len <= extra_len, where, ": extra field overruns its entry");
        if (id == kZip64ExtraId) {
            const uint8_t* f = extra + pos + 4;
            size_t avail = len;
            auto take = [&](uint64_t* out) {
                FOT_CHECK(avail >= 8, where, ": ZIP64 extra field is too short");
                *out = u64(f);
                f += 8;
                avail -= 8;
            };
            if (need_size) take(&e->size);
            if (need_csize) take(&e->compressed_size);
            if (need_offset) take(&e->local_header_offset);
            return;
        }
        pos += 4 + len;
    }
    FOT_CHECK(!(need_size || need_csize || need_offset), where,
              ": sizes need a ZIP64 extra field, which is missing");
}

}  // namespace

ZipReader::ZipReader(const uint8_t* data, size_t size, std::string origin)
    : data_(data), size_(size), origin_(std::move(origin)) {
    const std::string& o = origin_;
    FOT_CHECK(size_ >= kEocdSize, o, ": not a zip archive (", size_,
              " bytes, too short; truncated?)");
    // The end-of-central-directory record is the last thing in the file, followed only by
    // its comment (up to 64 KiB). Take the last signature whose comment length fits exactly.
    size_t eocd = SIZE_MAX;
    const size_t lowest = size_ >= kEocdSize + 0xffff ? size_ - kEocdSize - 0xffff : 0;
    for (size_t i = size_ - kEocdSize + 1; i-- > lowest;) {
        if (u32(data_ + i) == kEocdSig && i + kEocdSize + u16(data_ + i + 20) == size_) {
            eocd = i;
            break;
        }
    }
    FOT_CHECK(eocd != SIZE_MAX, o,
              ": not a zip archive (no end-of-central-directory record; truncated or not a "
              "torch.save file?)");
    const uint8_t* e = data_ + eocd;
    FOT_CHECK(u16(e + 4) == 0 && u16(e + 6) == 0, o, ": multi-disk zip archives are not supported");
    uint64_t count = u16(e + 10);
    uint64_t cd_size = u32(e + 12);
    uint64_t cd_offset = u32(e + 16);
    uint64_t cd_limit = eocd;  // the central directory ends before this
    if (count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
        FOT_CHECK(eocd >= kEocd64LocatorSize &&
                      u32(data_ + eocd - kEocd64LocatorSize) == kEocd64LocatorSig,
                  o, ": ZIP64 end-of-central-directory locator is missing");
        const uint8_t* loc = data_ + eocd - kEocd64LocatorSize;
        const uint64_t rec = u64(loc + 8);
        FOT_CHECK(in_bounds(rec, kEocd64Size, eocd - kEocd64LocatorSize) &&
                      u32(data_ + rec) == kEocd64Sig,
                  o, ": ZIP64 end-of-central-directory record at offset ", rec, " is invalid");
        const uint8_t* r = data_ + rec;
        count = u64(r + 32);
        cd_size = u64(r + 40);
        cd_offset = u64(r + 48);
        cd_limit = rec;
    }
    FOT_CHECK(in_bounds(cd_offset, cd_size, cd_limit), o, ": central directory (offset ", cd_offset,
              ", ", cd_size, " bytes) lies outside the archive (truncated?)");
    FOT_CHECK(count <= cd_size / kCentralSize, o, ": central directory claims ", count,
              " entries but holds ", cd_size, " bytes");
    entries_.reserve(count);
    uint64_t pos = cd_offset;
    const uint64_t cd_end = cd_offset + cd_size;
    for (uint64_t i = 0; i < count; ++i) {
        FOT_CHECK(in_bounds(pos, kCentralSize, cd_end) && u32(data_ + pos) == kCentralSig, o,
                  ": central directory entry ", i, " at offset ", pos, " is corrupt");
        const uint8_t* c = data_ + pos;
        const uint16_t name_len = u16(c + 28);
        const uint16_t extra_len = u16(c + 30);
        const uint16_t comment_len = u16(c + 32);
        const uint64_t total = kCentralSize + name_len + extra_len + comment_len;
        FOT_CHECK(in_bounds(pos, total, cd_end), o, ": central directory entry ", i,
                  " overruns the directory");
        ZipEntry z;
        z.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);
        z.flags = u16(c + 8);
        z.method = u16(c + 10);
        z.compressed_size = u32(c + 20);
        z.size = u32(c + 24);
        z.local_header_offset = u32(c + 42);
        apply_zip64_extra(c + kCentralSize + name_len, extra_len, z.size == 0xffffffffu,
                          z.compressed_size == 0xffffffffu, z.local_header_offset == 0xffffffffu,
                          &z, o + ": entry " + safe_quote(z.name));
        FOT_CHECK(by_name_.emplace(z.name, entries_.size()).second, o, ": duplicate entry ",
                  safe_quote(z.name));
        entries_.push_back(std::move(z));
        pos += total;
    }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* ZipReader::entry_data(const ZipEntry& e) const {
    const std::string where = origin_ + ": entry " + safe_quote(e.name);
    FOT_CHECK((e.flags & 1u) == 0, where, " is encrypted; only plain stored entries are supported");
    FOT_CHECK(e.method == 0, where, " is compressed (method ", e.method,
              "); only stored entries are supported (torch.save does not compress)");
    FOT_CHECK(e.compressed_size == e.size, where, " is stored but its sizes differ (",
              e.compressed_size, " vs ", e.size, ")");
    FOT_CHECK(in_bounds(e.local_header_offset, kLocalSize, size_) &&
                  u32(data_ + e.local_header_offset) == kLocalSig,
              where, ": local header at offset ", e.local_header_offset,
              " is missing or corrupt (truncated?)");
    const uint8_t* l = data_ + e.local_header_offset;
    const uint16_t name_len = u16(l + 26);
    const uint16_t extra_len = u16(l + 28);
    FOT_CHECK(name_len == e.name.size() &&
                  in_bounds(e.local_header_offset + kLocalSize, name_len, size_) &&
                  std::equal(e.name.begin(), e.name.end(), l + kLocalSize),
              where, ": local header names a different entry");
    const uint64_t start = e.local_header_offset + kLocalSize + name_len + extra_len;
    FOT_CHECK(in_bounds(start, e.size, size_), where, ": data (offset ", start, ", ", e.size,
              " bytes) runs past the end of the archive (", size_, " bytes; truncated?)");
    return data_ + start;
}

}  // namespace fot
