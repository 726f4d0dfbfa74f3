#include "runtime/io/pytorch_bin.h"

#include <algorithm>
#include <cstring>

#include "runtime/core/status.h"
#include "runtime/io/pickle.h"
#include "runtime/io/quote.h"
#include "runtime/io/zip_reader.h"

namespace fot {
namespace {

// The first bytes of a legacy torch.save file: pickle PROTO 2, then LONG1 of the magic
// number 0x1950a86a20f9469cfc6c.
constexpr uint8_t kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20};

// Finds "<top>/data.pkl" (exactly one folder level) and returns "<top>/".
std::string find_top_folder(const ZipReader& zip) {
    std::string top;
    for (const ZipEntry& e : zip.entries()) {
        const std::string& n = e.name;
        if (!n.ends_with("/data.pkl")) continue;
        std::string prefix = n.substr(0, n.size() - 8);  // keeps the '/'
        if (prefix.size() < 2 || prefix.find('/') != prefix.size() - 1) continue;
        FOT_CHECK(top.empty(), zip.origin(), ": archive holds two pickles (", safe_quote(top),
                  "data.pkl and ", safe_quote(n), ")");
        top = prefix;
    }
    FOT_CHECK(!top.empty(), zip.origin(),
              ": zip archive has no <folder>/data.pkl entry (not a torch.save checkpoint)");
    return top;
}

void check_contiguous(const PickledTensor& t, const std::string& where) {
    int64_t expected = 1;
    for (size_t d = t.shape.size(); d-- > 0;) {
        FOT_CHECK(t.shape[d] == 1 || t.stride[d] == expected, where, ": stride ",
                  shape_str(t.stride), " is not contiguous row-major for size ", shape_str(t.shape),
                  " (save it with .contiguous())");
        FOT_CHECK(!__builtin_mul_overflow(expected, t.shape[d], &expected), where, ": size ",
                  shape_str(t.shape), " is too large");
    }
}

}  // namespace

std::vector<TensorRecord> parse_pytorch_bin(const uint8_t* data, size_t size,
                                            const std::string& origin) {
    FOT_CHECK(
        !(size >= sizeof kLegacyMagic && std::memcmp(data, kLegacyMagic, sizeof kLegacyMagic) == 0),
        origin,
        ": legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with "
        "a recent PyTorch or convert it to safetensors in Python");
    ZipReader zip(data, size, origin);
    const std::string top = find_top_folder(zip);
    const ZipEntry& pkl_entry = *zip.find(top + "data.pkl");
    const uint8_t* pkl = zip.entry_data(pkl_entry);
    const std::vector<PickledTensor> pickled =
        unpickle_state_dict(pkl, pkl_entry.size, origin + ": " + pkl_entry.name);

    std::vector<TensorRecord> records;
    records.reserve(pickled.size());
    for (const PickledTensor& t : pickled) {
        const std::string where = origin + ": tensor " + safe_quote(t.name);
        const std::string entry_name = top + "data/" + t.storage_key;
        const ZipEntry* entry = zip.find(entry_name);
        FOT_CHECK(entry != nullptr, where, ": storage entry ", safe_quote(entry_name),
                  " is missing from the archive");
        const uint64_t elem = dtype_size(t.dtype);
        uint64_t storage_bytes = 0;
        FOT_CHECK(!__builtin_mul_overflow(t.storage_numel, elem, &storage_bytes) &&
                      storage_bytes == entry->size,
                  where, ": storage ", safe_quote(entry_name), " holds ", entry->size,
                  " bytes but the pickle says ", t.storage_numel, " x ", dtype_name(t.dtype));
        check_contiguous(t, where);
        const uint64_t numel = static_cast<uint64_t>(shape_numel(t.shape));
        const uint64_t offset = static_cast<uint64_t>(t.storage_offset);
        FOT_CHECK(offset <= t.storage_numel && numel <= t.storage_numel - offset, where,
                  ": elements [", offset, ", ", offset + numel, ") lie outside its storage of ",
                  t.storage_numel, " elements");
        const uint8_t* base = zip.entry_data(*entry);
        TensorRecord r;
        r.name = t.name;
        r.dtype = t.dtype;
        r.shape = t.shape;
        r.data = base + offset * elem;
        r.nbytes = static_cast<size_t>(numel * elem);
        r.file = origin;
        records.push_back(std::move(r));
    }
    std::sort(records.begin(), records.end(),
              [](const TensorRecord& a, const TensorRecord& b) { return a.name < b.name; });
    return records;
}

}  // namespace fot
