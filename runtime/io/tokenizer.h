// Tokenizer: a sentencepiece model with the LLaMA conventions (LlamaTokenizer): encode()
// prepends BOS (id 1 in LLaMA vocabularies, whatever the model says) and adds no EOS;
// decode() drops BOS/EOS/pad and joins pieces as sentencepiece does.
//
// A model's vocabulary may be larger than its tokenizer's (padded embeddings are common):
// decode() and id_to_piece() render an id the tokenizer has no piece for as the visible
// placeholder "<id:N>" (placeholder()) instead of failing, so generated tokens are never lost.
// The opposite (more pieces than the model's vocab_size) is refused by
// check_tokenizer_vocab().
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

    // "<id:319>": the text of an id outside [0, vocab_size()).
    static std::string placeholder(int64_t id);
};

// Throws fot::Error when the tokenizer at `tokenizer_path` has more pieces than the model's
// `model_vocab_size` (from `config_path`): its ids would index past the embedding.
void check_tokenizer_vocab(const Tokenizer& tok, const std::string& tokenizer_path,
                           int64_t model_vocab_size, const std::string& config_path);

}  // namespace fot
