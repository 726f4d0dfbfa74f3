// Corpus: the documents a corpus job (score, batch) reads, from one of three formats:
//  - JSONL: one JSON object per line, {"id": ..., "text": "..."} or {"id": ..., "ids": [...]};
//    the id is a string or an integer. Blank lines are skipped (they are not records).
//  - a directory of .txt files (not recursive): one document per file, id = file name,
//    documents in file-name order; other files are ignored.
//  - a pre-tokenized binary: DATA.bin holds little-endian uint16 or uint32 token ids back to
//    back; an offsets file holds n + 1 little-endian uint64 token offsets (0 first, the number
//    of tokens in DATA.bin last); document i is [offsets[i], offsets[i+1]), id = i. The token
//    width follows from the two file sizes unless given.
//
// Corpus::open() indexes the whole input once (rank 0 only; it keeps offsets, ids and size
// estimates, not texts) and throws fot::Error only when the corpus as a whole is unusable
// (missing path, no .txt files, a corrupt offsets file). A bad record never throws: read()
// returns it with `error` set (invalid JSON, missing or duplicate id, unknown fields, empty
// text, token ids out of range, ...) so that the job can write an error record and go on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fot {

// One input record, as a job sees it. Exactly one of text / ids is meaningful unless error
// is set.
struct Document {
    int64_t index = 0;             // position in the corpus, 0-based
    std::string id_json = "null";  // the id as JSON text: "\"doc-1\"", "17" or null
    bool has_text = false;
    std::string text;
    std::vector<int32_t> ids;
    std::string error;  // non-empty: the record is malformed; the reason, one line
};

// Documents cross the control plane (rank 0 to a group) in this byte form.
std::string serialize_document(const Document& d);
// Throws fot::Error on a truncated or corrupt message (a bug, not a user error).
Document deserialize_document(std::string_view bytes);

enum class CorpusFormat { kAuto, kJsonl, kTextDir, kTokenBinary };

struct CorpusSpec {
    std::string path;
    CorpusFormat format = CorpusFormat::kAuto;  // auto: directory -> text, *.bin -> binary,
                                                // anything else -> JSONL
    std::string offsets_path;  // binary: default is the data path with .bin replaced by
                               // .offsets
    int token_bytes = 0;       // binary: 2 or 4; 0 = infer from the file sizes
    int64_t vocab_size = 0;    // > 0: ids outside [0, vocab_size) make error records
};

class Corpus {
  public:
    // Indexes the corpus (see above). Throws fot::Error naming the path when it is unusable.
    static std::unique_ptr<Corpus> open(const CorpusSpec& spec);
    virtual ~Corpus() = default;

    // Number of records (including malformed ones).
    virtual int64_t size() const = 0;
    // Estimated token count of record i (exact for ids; bytes / 4 for text), for ordering work
    // and for progress estimates.
    virtual int64_t cost_hint(int64_t index) const = 0;
    // Record i (0 <= i < size()); malformed records come back with `error` set.
    virtual Document read(int64_t index) const = 0;
    // True when some record holds text (the job then needs the tokenizer).
    virtual bool has_text() const = 0;
    // One line for logs and the resume fingerprint, e.g. "jsonl docs.jsonl (120 records,
    // 48213 bytes)".
    virtual std::string describe() const = 0;
    // The files the corpus reads (the JSONL file; every .txt file of a directory; a token .bin
    // and its offsets file): a job refuses to write over any of them.
    virtual std::vector<std::string> files() const = 0;
};

// "u16" / "uint16" -> 2, "u32" / "uint32" -> 4; false when unknown.
bool parse_token_width(const std::string& s, int* bytes);

// Parses the text of a --ids file: a flat JSON list of token ids in [0, 2^31) (strict JSON:
// no NUL, no trailing junk). Throws fot::Error "ORIGIN: ..." otherwise.
std::vector<int32_t> parse_ids_json(std::string_view text, const std::string& origin);

// The longest JSONL line read as a record: 64 MiB (a document of ~16M tokens), or
// FOT_MAX_RECORD_BYTES (bytes, or with K, M, G). A longer line becomes an error record without
// being parsed, so that one runaway line (a missing newline in a generated file) costs
// neither the memory of a parse tree nor the job.
inline constexpr int64_t kDefaultMaxRecordBytes = int64_t{64} << 20;
int64_t max_record_bytes();

// Parses one JSONL record (the line without its newline) into `d` (index already set):
// id, text or ids, or `error`. Exposed for tests.
void parse_jsonl_record(std::string_view line, int64_t vocab_size, Document& d);

}  // namespace fot
