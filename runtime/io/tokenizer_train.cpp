#include "runtime/io/tokenizer_train.h"

#include <sentencepiece_trainer.h>

#include "runtime/core/status.h"

namespace fot {

namespace {

class VectorIterator : public sentencepiece::SentenceIterator {
  public:
    explicit VectorIterator(const std::vector<std::string>& v) : v_(v) {}
    bool done() const override { return i_ >= v_.size(); }
    void Next() override { ++i_; }
    const std::string& value() const override { return v_[i_]; }
    sentencepiece::util::Status status() const override { return {}; }

  private:
    const std::vector<std::string>& v_;
    size_t i_ = 0;
};

}  // namespace

std::string train_bpe_tokenizer(const std::vector<std::string>& sentences, int64_t vocab_size) {
    FOT_CHECK(!sentences.empty(), "tokenizer training: no text");
    VectorIterator it(sentences);
    std::string model;
    const std::string args =
        "--model_type=bpe --vocab_size=" + std::to_string(vocab_size) +
        " --hard_vocab_limit=false --character_coverage=1.0 --byte_fallback=false"
        " --split_digits=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --num_threads=1"
        " --minloglevel=2 --max_sentence_length=100000 --input_sentence_size=0"
        " --shuffle_input_sentence=false";
    const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
    FOT_CHECK(status.ok(), "tokenizer training failed: ", status.ToString());
    return model;
}

}  // namespace fot
