#include "runtime/io/safetensors.h"

#include <algorithm>
#include <cstring>

#include "config/json_strict.h"
#include "runtime/core/status.h"
#include "runtime/io/quote.h"

namespace fot {
namespace {

struct Span {
    uint64_t begin, end;
    size_t index;  // into the record list
};

bool dtype_from_safetensors(const std::string& s, DType* out) {
    if (s == "F32") {
        *out = DType::kF32;
    } else if (s == "BF16") {
        *out = DType::kBF16;
    } else if (s == "F16") {
        *out = DType::kF16;
    } else if (s == "I32") {
        *out = DType::kI32;
    } else if (s == "I64") {
        *out = DType::kI64;
    } else if (s == "U8") {
        *out = DType::kU8;
    } else {
        return false;
    }
    return true;
}

bool is_other_safetensors_dtype(const std::string& s) {
    static const char* const kOthers[] = {"F64",     "I8",      "I16",     "U16",     "U32",
                                          "U64",     "BOOL",    "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                          "F6_E2M3", "F6_E3M2", "F4",      "C64"};
    return std::any_of(std::begin(kOthers), std::end(kOthers),
                       [&](const char* o) { return s == o; });
}

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

TensorRecord parse_entry(const std::string& name, const nlohmann::json& e, const uint8_t* base,
                         uint64_t data_size, const std::string& origin, Span* span) {
    const std::string where = origin + ": tensor " + safe_quote(name);
    FOT_CHECK(!name.empty(), origin, ": header has a tensor with an empty name");
    FOT_CHECK(e.is_object(), where, ": header entry is not a JSON object");
    auto dt = e.find("dtype");
    FOT_CHECK(dt != e.end() && dt->is_string(), where, ": missing or non-string \"dtype\"");
    TensorRecord r;
    r.name = name;
    r.file = origin;
    const std::string dts = dt->get<std::string>();
    if (!dtype_from_safetensors(dts, &r.dtype)) {
        FOT_CHECK(!is_other_safetensors_dtype(dts), where, ": dtype ", dts,
                  " is not supported (F32, BF16, F16, I32, I64, U8)");
        FOT_THROW(where, ": unknown dtype ", safe_quote(dts));
    }
    auto sh = e.find("shape");
    FOT_CHECK(sh != e.end() && sh->is_array(), where, ": missing or non-array \"shape\"");
    uint64_t numel = 1;
    for (const auto& d : *sh) {
        FOT_CHECK(d.is_number_unsigned(), where, ": shape ", one_line(sh->dump()),
                  " has an entry that is not a non-negative integer");
        uint64_t v = d.get<uint64_t>();
        FOT_CHECK(
            v <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(numel, v, &numel),
            where, ": shape ", one_line(sh->dump()), " is too large");
        r.shape.push_back(static_cast<int64_t>(v));
    }
    uint64_t nbytes = 0;
    FOT_CHECK(!__builtin_mul_overflow(numel, dtype_size(r.dtype), &nbytes), where, ": shape ",
              shape_str(r.shape), " is too large");
    auto off = e.find("data_offsets");
    FOT_CHECK(off != e.end() && off->is_array() && off->size() == 2 &&
                  (*off)[0].is_number_unsigned() && (*off)[1].is_number_unsigned(),
              where, ": \"data_offsets\" must be [begin, end] with non-negative integers");
    uint64_t begin = (*off)[0].get<uint64_t>();
    uint64_t end = (*off)[1].get<uint64_t>();
    FOT_CHECK(begin <= end, where, ": data_offsets [", begin, ", ", end, "] end before they begin");
    FOT_CHECK(end <= data_size, where, ": data_offsets [", begin, ", ", end,
              "] are out of range: the data section holds ", data_size, " bytes (file truncated?)");
    FOT_CHECK(end - begin == nbytes, where, ": shape ", shape_str(r.shape), " x ", dts, " is ",
              nbytes, " bytes but data_offsets [", begin, ", ", end, "] span ", end - begin);
    r.data = base + begin;
    r.nbytes = static_cast<size_t>(nbytes);
    *span = Span{begin, end, 0};
    return r;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
    switch (t) {
        case DType::kF32:
            return "F32";
        case DType::kBF16:
            return "BF16";
        case DType::kF16:
            return "F16";
        case DType::kI32:
            return "I32";
        case DType::kI64:
            return "I64";
        case DType::kU8:
            return "U8";
    }
    return "?";
}

std::vector<TensorRecord> parse_safetensors(const uint8_t* data, size_t size,
                                            const std::string& origin) {
    FOT_CHECK(size >= 8, origin, ": file is ", size,
              " bytes, too short for a safetensors header (truncated?)");
    const uint64_t header_len = read_u64_le(data);
    FOT_CHECK(header_len <= size - 8, origin, ": header length ", header_len,
              " is larger than the file (", size, " bytes; truncated or not safetensors)");
    FOT_CHECK(header_len <= kSafetensorsMaxHeaderBytes, origin, ": header length ", header_len,
              " exceeds the ", kSafetensorsMaxHeaderBytes, "-byte limit");
    FOT_CHECK(header_len >= 2 && data[8] == '{', origin,
              ": header does not start with '{' (not a safetensors file?)");
    const std::string_view text(reinterpret_cast<const char*>(data + 8), header_len);
    const nlohmann::json header = parse_json_strict(text, origin + ": header");
    FOT_CHECK(header.is_object(), origin, ": header is not a JSON object");

    const uint8_t* base = data + 8 + header_len;
    const uint64_t data_size = size - 8 - header_len;
    std::vector<TensorRecord> records;
    std::vector<Span> spans;
    for (const auto& [key, value] : header.items()) {
        if (key == "__metadata__") {
            FOT_CHECK(value.is_object(), origin, ": \"__metadata__\" is not a JSON object");
            continue;
        }
        Span span{};
        records.push_back(parse_entry(key, value, base, data_size, origin, &span));
        span.index = records.size() - 1;
        if (span.end > span.begin) spans.push_back(span);
    }
    std::sort(spans.begin(), spans.end(),
              [](const Span& a, const Span& b) { return a.begin < b.begin; });
    for (size_t i = 1; i < spans.size(); ++i) {
        const Span& a = spans[i - 1];
        const Span& b = spans[i];
        FOT_CHECK(b.begin >= a.end, origin, ": tensors ", safe_quote(records[a.index].name), " [",
                  a.begin, ", ", a.end, ") and ", safe_quote(records[b.index].name), " [", b.begin,
                  ", ", b.end, ") overlap");
    }
    std::sort(records.begin(), records.end(),
              [](const TensorRecord& a, const TensorRecord& b) { return a.name < b.name; });
    return records;
}

}  // namespace fot
