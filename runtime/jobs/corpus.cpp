#include "runtime/jobs/corpus.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "config/json_strict.h"
#include "runtime/core/host_memory.h"
#include "runtime/core/status.h"
#include "runtime/io/mapped_file.h"
#include "runtime/io/quote.h"

namespace fot {

namespace fs = std::filesystem;

// ---- wire form ---------------------------------------------------------------------------

namespace {

template <typename T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

void put_bytes(std::string& out, std::string_view s) {
    put<uint64_t>(out, s.size());
    out.append(s.data(), s.size());
}

class WireReader {
  public:
    explicit WireReader(std::string_view b) : b_(b) {}
    template <typename T>
    T get() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, b_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string_view bytes(uint64_t n) {
        need(n);
        std::string_view s = b_.substr(pos_, n);
        pos_ += n;
        return s;
    }
    std::string_view sized() { return bytes(get<uint64_t>()); }
    bool done() const { return pos_ == b_.size(); }

  private:
    void need(uint64_t n) const {
        FOT_CHECK(n <= b_.size() - pos_, "deserialize_document: message truncated (", b_.size(),
                  " bytes)");
    }
    std::string_view b_;
    size_t pos_ = 0;
};

}  // namespace

std::string serialize_document(const Document& d) {
    std::string out;
    out.reserve(64 + d.id_json.size() + d.error.size() + d.text.size() + 4 * d.ids.size());
    put<int64_t>(out, d.index);
    put_bytes(out, d.id_json);
    put_bytes(out, d.error);
    put<uint8_t>(out, d.has_text ? 1 : 0);
    if (d.has_text) {
        put_bytes(out, d.text);
    } else {
        put_bytes(out, std::string_view(reinterpret_cast<const char*>(d.ids.data()),
                                        d.ids.size() * sizeof(int32_t)));
    }
    return out;
}

Document deserialize_document(std::string_view bytes) {
    WireReader r(bytes);
    Document d;
    d.index = r.get<int64_t>();
    d.id_json = std::string(r.sized());
    d.error = std::string(r.sized());
    d.has_text = r.get<uint8_t>() != 0;
    std::string_view body = r.sized();
    if (d.has_text) {
        d.text = std::string(body);
    } else {
        FOT_CHECK(body.size() % sizeof(int32_t) == 0, "deserialize_document: corrupt ids");
        d.ids.resize(body.size() / sizeof(int32_t));
        if (!body.empty()) std::memcpy(d.ids.data(), body.data(), body.size());
    }
    FOT_CHECK(r.done(), "deserialize_document: trailing bytes");
    return d;
}

bool parse_token_width(const std::string& s, int* bytes) {
    if (s == "u16" || s == "uint16") {
        *bytes = 2;
    } else if (s == "u32" || s == "uint32") {
        *bytes = 4;
    } else {
        return false;
    }
    return true;
}

// ---- JSONL records -------------------------------------------------------------------------

namespace {

// A reason for an error record: one line, and valid UTF-8 even when it quotes the record's
// own bytes (the JSON parser's message does), so that the record can be written.
std::string reason_line(const std::string& s) {
    std::string out = escape_invalid_utf8(s);
    std::replace(out.begin(), out.end(), '\n', ' ');
    std::replace(out.begin(), out.end(), '\r', ' ');
    return out;
}

// Sets d.error for ids outside [0, vocab) (vocab <= 0: only the int32 range is checked).
void check_ids(Document& d, int64_t vocab) {
    if (d.ids.empty()) {
        d.error = "empty document: no token ids";
        return;
    }
    if (vocab <= 0) return;
    for (size_t i = 0; i < d.ids.size(); ++i) {
        if (d.ids[i] < 0 || d.ids[i] >= vocab) {
            d.error = str("token id ", d.ids[i], " at position ", i,
                          " is out of the vocabulary [0, ", vocab, ")");
            return;
        }
    }
}

bool is_blank(std::string_view line) {
    return std::all_of(line.begin(), line.end(),
                       [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

}  // namespace

int64_t max_record_bytes() {
    static const int64_t limit = env_size_bytes("FOT_MAX_RECORD_BYTES", kDefaultMaxRecordBytes);
    return limit;
}

void parse_jsonl_record(std::string_view line, int64_t vocab_size, Document& d) {
    d.id_json = "null";
    d.has_text = false;
    d.text.clear();
    d.ids.clear();
    d.error.clear();
    if (static_cast<int64_t>(line.size()) > max_record_bytes()) {
        d.error = str("the line is ", line.size(), " bytes, over the limit of ", max_record_bytes(),
                      " bytes for one record (FOT_MAX_RECORD_BYTES; a missing newline?)");
        return;
    }
    nlohmann::json j;
    if (std::string why; !try_parse_json_strict(line, &j, &why)) {
        d.error = reason_line("not valid JSON: " + why);
        return;
    }
    if (!j.is_object()) {
        d.error = str("expected a JSON object {\"id\": ..., \"text\"|\"ids\": ...}, got a ",
                      j.type_name());
        return;
    }
    auto id = j.find("id");
    if (id != j.end()) {
        if (id->is_string() || id->is_number_integer()) {
            d.id_json = id->dump();
        } else {
            d.error = str("\"id\" must be a string or an integer, got a ", id->type_name());
            return;
        }
    }
    for (const auto& [key, value] : j.items()) {
        if (key != "id" && key != "text" && key != "ids") {
            d.error = reason_line(str("unknown field \"", key,
                                      "\" (expected \"id\" and one of "
                                      "\"text\" or \"ids\")"));
            return;
        }
    }
    if (id == j.end()) {
        d.error = "missing \"id\"";
        return;
    }
    const bool has_text = j.contains("text"), has_ids = j.contains("ids");
    if (has_text == has_ids) {
        d.error = has_text ? "both \"text\" and \"ids\" given (expected one)"
                           : "missing \"text\" or \"ids\"";
        return;
    }
    if (has_text) {
        const auto& t = j["text"];
        if (!t.is_string()) {
            d.error = str("\"text\" must be a string, got a ", t.type_name());
            return;
        }
        d.text = t.get<std::string>();
        if (d.text.empty()) {
            d.error = "empty text";
            return;
        }
        d.has_text = true;
        return;
    }
    const auto& ids = j["ids"];
    if (!ids.is_array()) {
        d.error = str("\"ids\" must be a list of token ids, got a ", ids.type_name());
        return;
    }
    d.ids.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        const auto& v = ids[i];
        if (!v.is_number_integer()) {
            d.error = str("\"ids\"[", i, "] is not an integer token id");
            return;
        }
        // dump(), not get<int64_t>(): a value above INT64_MAX must not print as negative.
        const int64_t kMax = std::numeric_limits<int32_t>::max();
        if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(kMax)
                                   : v.get<int64_t>() < 0 || v.get<int64_t>() > kMax) {
            d.error = str("token id ", v.dump(), " at position ", i, " is negative or too large");
            return;
        }
        const int64_t x = v.get<int64_t>();
        d.ids.push_back(static_cast<int32_t>(x));
    }
    check_ids(d, vocab_size);
}

std::vector<int32_t> parse_ids_json(std::string_view text, const std::string& origin) {
    nlohmann::json j;
    std::string reason;
    FOT_CHECK(try_parse_json_strict(text, &j, &reason), origin,
              ": not valid JSON (expected a flat list of token ids): ", reason);
    FOT_CHECK(j.is_array(), origin,
              ": expected a flat JSON list of token ids, e.g. [1, 450, 29871]");
    std::vector<int32_t> ids;
    ids.reserve(j.size());
    for (size_t i = 0; i < j.size(); ++i) {
        const auto& v = j[i];
        FOT_CHECK(v.is_number_integer(), origin, ": element ", i, " is not an integer token id");
        // dump(), not get<int64_t>(): a value above INT64_MAX must not print as negative.
        const int64_t kMax = std::numeric_limits<int32_t>::max();
        const bool in_range = v.is_number_unsigned()
                                  ? v.get<uint64_t>() <= static_cast<uint64_t>(kMax)
                                  : v.get<int64_t>() >= 0 && v.get<int64_t>() <= kMax;
        FOT_CHECK(in_range, origin, ": token id ", v.dump(), " at index ", i,
                  " is negative or too large");
        ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
    return ids;
}

namespace {

class JsonlCorpus final : public Corpus {
  public:
    explicit JsonlCorpus(const CorpusSpec& spec) : spec_(spec) {
        file_ = MappedFile::open(spec.path);
        const char* data = reinterpret_cast<const char*>(file_.data());
        const size_t n = file_.size();
        std::unordered_map<std::string, int64_t> first_by_id;
        Document d;
        size_t pos = 0;
        int64_t line_no = 0;
        while (pos < n) {
            const char* nl = static_cast<const char*>(std::memchr(data + pos, '\n', n - pos));
            const size_t end = nl ? static_cast<size_t>(nl - data) : n;
            ++line_no;
            std::string_view line(data + pos, end - pos);
            if (!is_blank(line)) {
                Entry e{pos, end - pos, line_no, 1, {}};
                d.index = static_cast<int64_t>(entries_.size());
                parse_jsonl_record(line, spec.vocab_size, d);
                if (d.error.empty()) {
                    e.cost = d.has_text ? std::max<int64_t>(1, d.text.size() / 4)
                                        : static_cast<int64_t>(d.ids.size());
                    has_text_ = has_text_ || d.has_text;
                }
                if (d.id_json != "null") {
                    auto [it, fresh] = first_by_id.emplace(d.id_json, d.index);
                    if (!fresh && d.error.empty()) {
                        e.duplicate_of = str("duplicate id ", d.id_json, " (first used by record ",
                                             it->second, ", line ", entries_[it->second].line, ")");
                    }
                }
                entries_.push_back(std::move(e));
            }
            pos = end + 1;
        }
    }

    int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
    int64_t cost_hint(int64_t i) const override { return entries_.at(i).cost; }
    bool has_text() const override { return has_text_; }

    Document read(int64_t i) const override {
        const Entry& e = entries_.at(i);
        Document d;
        d.index = i;
        parse_jsonl_record(
            std::string_view(reinterpret_cast<const char*>(file_.data()) + e.offset, e.length),
            spec_.vocab_size, d);
        if (d.error.empty() && !e.duplicate_of.empty()) d.error = e.duplicate_of;
        if (!d.error.empty()) {
            d.error = str("line ", e.line, ": ", d.error);
            d.text.clear();
            d.ids.clear();
        }
        return d;
    }

    std::string describe() const override {
        return str("jsonl ", spec_.path, " (", entries_.size(), " records, ", file_.size(),
                   " bytes)");
    }
    std::vector<std::string> files() const override { return {spec_.path}; }

  private:
    struct Entry {
        size_t offset;
        size_t length;
        int64_t line;
        int64_t cost;
        std::string duplicate_of;
    };
    CorpusSpec spec_;
    MappedFile file_;
    std::vector<Entry> entries_;
    bool has_text_ = false;
};

class TextDirCorpus final : public Corpus {
  public:
    explicit TextDirCorpus(const CorpusSpec& spec) : spec_(spec) {
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(spec.path, ec)) {
            if (!entry.is_regular_file(ec) || entry.path().extension() != ".txt") continue;
            files_.push_back(
                {entry.path().filename().string(), static_cast<int64_t>(entry.file_size(ec))});
            total_bytes_ += files_.back().bytes;
        }
        FOT_CHECK(!ec, "cannot list the corpus directory ", spec.path, ": ", ec.message());
        FOT_CHECK(!files_.empty(), "corpus directory ", spec.path,
                  " holds no .txt files (expected one document per .txt file)");
        std::sort(files_.begin(), files_.end(),
                  [](const File& a, const File& b) { return a.name < b.name; });
    }

    int64_t size() const override { return static_cast<int64_t>(files_.size()); }
    int64_t cost_hint(int64_t i) const override {
        return std::max<int64_t>(1, files_.at(i).bytes / 4);
    }
    bool has_text() const override { return true; }

    Document read(int64_t i) const override {
        const File& f = files_.at(i);
        Document d;
        d.index = i;
        // A file name need not be UTF-8; the id must be (it is written as JSON).
        d.id_json = nlohmann::json(escape_invalid_utf8(f.name)).dump();
        const fs::path path = fs::path(spec_.path) / f.name;
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            d.error = reason_line(str("cannot read ", path.string()));
            return d;
        }
        d.text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        if (d.text.empty()) {
            d.error = reason_line(str("empty text (", path.string(), ")"));
            return d;
        }
        d.has_text = true;
        return d;
    }

    std::string describe() const override {
        return str("text directory ", spec_.path, " (", files_.size(), " .txt files, ",
                   total_bytes_, " bytes)");
    }
    std::vector<std::string> files() const override {
        std::vector<std::string> out;
        for (const File& f : files_) out.push_back((fs::path(spec_.path) / f.name).string());
        return out;
    }

  private:
    struct File {
        std::string name;
        int64_t bytes;
    };
    CorpusSpec spec_;
    std::vector<File> files_;
    int64_t total_bytes_ = 0;
};

class TokenBinaryCorpus final : public Corpus {
  public:
    explicit TokenBinaryCorpus(const CorpusSpec& spec) : spec_(spec) {
        if (spec_.offsets_path.empty()) {
            fs::path p(spec.path);
            spec_.offsets_path = (p.extension() == ".bin" ? p.replace_extension(".offsets")
                                                          : fs::path(spec.path + ".offsets"))
                                     .string();
        }
        const std::string& op = spec_.offsets_path;
        FOT_CHECK(fs::exists(op), "token corpus ", spec.path, ": offsets file ", op,
                  " does not exist (n + 1 little-endian uint64 offsets; give it with --offsets)");
        data_ = MappedFile::open(spec.path);
        offsets_file_ = MappedFile::open(op);
        FOT_CHECK(offsets_file_.size() % 8 == 0 && offsets_file_.size() >= 8, "offsets file ", op,
                  ": ", offsets_file_.size(),
                  " bytes is not a list of n + 1 >= 1 little-endian uint64 offsets");
        const int64_t count = static_cast<int64_t>(offsets_file_.size() / 8);
        offsets_.resize(count);
        std::memcpy(offsets_.data(), offsets_file_.data(), offsets_file_.size());
        FOT_CHECK(offsets_[0] == 0, "offsets file ", op, ": the first offset must be 0, got ",
                  offsets_[0]);
        for (int64_t i = 1; i < count; ++i) {
            FOT_CHECK(offsets_[i] >= offsets_[i - 1], "offsets file ", op, ": offset ", i, " (",
                      offsets_[i], ") is smaller than offset ", i - 1, " (", offsets_[i - 1], ")");
        }
        const uint64_t tokens = offsets_.back();
        const uint64_t bytes = data_.size();
        // Compared as bytes / width == tokens, never as bytes == width * tokens: a last offset
        // near 2^64 / width would wrap the product to the file size and let every document
        // read past the mapping.
        auto holds = [&](uint64_t w) { return bytes % w == 0 && bytes / w == tokens; };
        int width = spec.token_bytes;
        if (width == 0) {
            width = tokens == 0 ? 2 : holds(2) ? 2 : holds(4) ? 4 : 0;
            FOT_CHECK(width != 0, "token corpus ", spec.path, " has ", bytes,
                      " bytes but its offsets file ", op, " ends at ", tokens,
                      " tokens: that is neither uint16 (2 bytes per token) nor uint32 (4 bytes per "
                      "token) ids");
        }
        FOT_CHECK(width == 2 || width == 4, "token width must be 2 (uint16) or 4 (uint32) bytes");
        FOT_CHECK(holds(static_cast<uint64_t>(width)), "token corpus ", spec.path, " has ", bytes,
                  " bytes = ", bytes / width, " tokens of ", width, " bytes, but its offsets file ",
                  op, " ends at ", tokens, " tokens");
        width_ = width;
    }

    int64_t size() const override { return static_cast<int64_t>(offsets_.size()) - 1; }
    int64_t cost_hint(int64_t i) const override {
        return static_cast<int64_t>(offsets_.at(i + 1) - offsets_.at(i));
    }
    bool has_text() const override { return false; }

    Document read(int64_t i) const override {
        Document d;
        d.index = i;
        d.id_json = std::to_string(i);
        const uint64_t b = offsets_.at(i), e = offsets_.at(i + 1);
        d.ids.resize(e - b);
        for (uint64_t t = b; t < e; ++t) {
            uint32_t v = 0;
            if (width_ == 2) {
                uint16_t h;
                std::memcpy(&h, data_.data() + 2 * t, 2);
                v = h;
            } else {
                std::memcpy(&v, data_.data() + 4 * t, 4);
            }
            if (v > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
                d.ids.clear();
                d.error = str("token id ", v, " at position ", t - b, " is too large");
                return d;
            }
            d.ids[t - b] = static_cast<int32_t>(v);
        }
        check_ids(d, spec_.vocab_size);
        if (!d.error.empty()) d.ids.clear();
        return d;
    }

    std::string describe() const override {
        return str("uint", 8 * width_, " token corpus ", spec_.path, " (", size(), " documents, ",
                   offsets_.back(), " tokens)");
    }
    std::vector<std::string> files() const override { return {spec_.path, spec_.offsets_path}; }

  private:
    CorpusSpec spec_;
    MappedFile data_;
    MappedFile offsets_file_;
    std::vector<uint64_t> offsets_;
    int width_ = 2;
};

}  // namespace

std::unique_ptr<Corpus> Corpus::open(const CorpusSpec& spec) {
    FOT_CHECK(!spec.path.empty(), "no corpus given (--input)");
    std::error_code ec;
    FOT_CHECK(fs::exists(spec.path, ec), "corpus ", spec.path, " does not exist");
    CorpusFormat f = spec.format;
    if (f == CorpusFormat::kAuto) {
        if (fs::is_directory(spec.path, ec)) {
            f = CorpusFormat::kTextDir;
        } else if (fs::path(spec.path).extension() == ".bin") {
            f = CorpusFormat::kTokenBinary;
        } else {
            f = CorpusFormat::kJsonl;
        }
    }
    switch (f) {
        case CorpusFormat::kTextDir:
            FOT_CHECK(fs::is_directory(spec.path, ec), "corpus ", spec.path,
                      " is not a directory of .txt files");
            return std::make_unique<TextDirCorpus>(spec);
        case CorpusFormat::kTokenBinary:
            return std::make_unique<TokenBinaryCorpus>(spec);
        case CorpusFormat::kJsonl:
        case CorpusFormat::kAuto:
            FOT_CHECK(!fs::is_directory(spec.path, ec), "corpus ", spec.path,
                      " is a directory, not a JSONL file");
            return std::make_unique<JsonlCorpus>(spec);
    }
    return nullptr;
}

}  // namespace fot
