#include "runtime/io/tokenizer.h"

#include <sys/stat.h>

#include <fstream>

#include <sentencepiece_processor.h>

#include "runtime/core/status.h"

namespace fot {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
  public:
    explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
        struct stat st {};
        FOT_CHECK(::stat(path.c_str(), &st) == 0, path, ": cannot open tokenizer (no such file)");
        FOT_CHECK(S_ISREG(st.st_mode), path, ": not a regular file (expected a tokenizer.model)");
        std::ifstream in(path, std::ios::binary);
        FOT_CHECK(in.good(), path, ": cannot open tokenizer (permission denied?)");
        // Reading the bytes here separates "cannot read the file" from "not a model", which
        // sentencepiece's own Load(path) reports alike.
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        FOT_CHECK(!in.bad(), path, ": read error");
        FOT_CHECK(!bytes.empty(), path, ": empty file, not a sentencepiece model");
        auto status = sp_.LoadFromSerializedProto(bytes);
        FOT_CHECK(status.ok(), path, ": not a valid sentencepiece model (", status.ToString(), ")");
        FOT_CHECK(sp_.GetPieceSize() > 0, path, ": sentencepiece model has an empty vocabulary");
    }

    std::vector<int32_t> encode(const std::string& text, bool add_bos) const override {
        std::vector<int> ids;
        auto status = sp_.Encode(text, &ids);
        FOT_CHECK(status.ok(), path_, ": cannot encode text: ", status.ToString());
        std::vector<int32_t> out;
        out.reserve(ids.size() + 1);
        if (add_bos) {
            FOT_CHECK(sp_.bos_id() >= 0, path_,
                      ": the tokenizer defines no BOS piece, cannot prepend BOS");
            out.push_back(sp_.bos_id());
        }
        out.insert(out.end(), ids.begin(), ids.end());
        return out;
    }

    std::string decode(const std::vector<int32_t>& ids) const override {
        // Runs of known ids are decoded by sentencepiece (which joins pieces and handles the
        // leading space); an unknown id becomes a placeholder between runs.
        std::string text;
        std::vector<int> run;
        auto flush = [&] {
            if (run.empty()) return;
            std::string part;
            auto status = sp_.Decode(run, &part);
            FOT_CHECK(status.ok(), path_, ": cannot decode ids: ", status.ToString());
            text += part;
            run.clear();
        };
        for (int32_t id : ids) {
            if (!known(id)) {
                flush();
                text += placeholder(id);
                continue;
            }
            // BOS/EOS/pad are control pieces; dropping them here also covers models whose
            // pad is not marked as control in the vocabulary.
            if (sp_.IsControl(id) || id == sp_.pad_id()) continue;
            run.push_back(id);
        }
        flush();
        return text;
    }

    std::string id_to_piece(int32_t id) const override {
        if (!known(id)) return placeholder(id);
        if (sp_.IsControl(id) || id == sp_.pad_id()) return "";
        if (sp_.IsUnknown(id)) return " \xE2\x81\x87 ";  // what sentencepiece decodes unk to
        const std::string& piece = sp_.IdToPiece(id);
        if (sp_.IsByte(id)) {
            // Byte-fallback pieces look like "<0x0A>".
            return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
        }
        static const std::string kSpace = "\xE2\x96\x81";  // U+2581, sentencepiece's space
        std::string out;
        for (size_t i = 0; i < piece.size();) {
            if (piece.compare(i, kSpace.size(), kSpace) == 0) {
                out += ' ';
                i += kSpace.size();
            } else {
                out += piece[i++];
            }
        }
        return out;
    }

    int64_t vocab_size() const override { return sp_.GetPieceSize(); }
    int32_t bos_id() const override { return sp_.bos_id(); }
    int32_t eos_id() const override { return sp_.eos_id(); }

  private:
    bool known(int32_t id) const { return id >= 0 && id < sp_.GetPieceSize(); }

    std::string path_;
    sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
    return std::make_unique<SentencePieceTokenizer>(path);
}

std::string Tokenizer::placeholder(int64_t id) {
    return "<id:" + std::to_string(id) + ">";
}

void check_tokenizer_vocab(const Tokenizer& tok, const std::string& tokenizer_path,
                           int64_t model_vocab_size, const std::string& config_path) {
    FOT_CHECK(tok.vocab_size() <= model_vocab_size, tokenizer_path, " has ", tok.vocab_size(),
              " pieces but the model's vocab_size is ", model_vocab_size, " (", config_path,
              "): its token ids would be outside the model's vocabulary; use the "
              "tokenizer.model that came with this checkpoint");
}

}  // namespace fot
