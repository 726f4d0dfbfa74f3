// Tokenizer: a sentencepiece model with the LLaMA conventions (LlamaTokenizer): encode()
// prepends BOS (id 1 in LLaMA vocabularies, whatever the model says) and adds no EOS;
// decode() drops BOS/EOS/pad and joins pieces as sentencepiece does.
//
// This is the only file family that includes sentencepiece headers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fot {

class Tokenizer {
  public:
    virtual ~Tokenizer() = default;
    // Loads `path` (a tokenizer.model). Throws fot::Error naming the file on failure.
    static std::unique_ptr<Tokenizer> load(const std::string& path);

    virtual std::vector<int32_t> encode(const std::string& text, bool add_bos = true) const = 0;
    virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
    // Text of one id as it would appear appended to previous output (for streaming).
    virtual std::string id_to_piece(int32_t id) const = 0;
    virtual int64_t vocab_size() const = 0;
    virtual int32_t bos_id() const = 0;
    virtual int32_t eos_id() const = 0;
};

}  // namespace fot
