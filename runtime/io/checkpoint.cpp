// Checkpoint::open / open_file: finds the layout of a model directory, maps its files and
// cross-checks index files against the shards they name.
#include "runtime/io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "config/json_strict.h"
#include "runtime/core/status.h"
#include "runtime/io/mapped_file.h"
#include "runtime/io/pytorch_bin.h"
#include "runtime/io/quote.h"
#include "runtime/io/safetensors.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

enum class Format { kSafetensors, kPytorchBin };

bool is_skipped(const std::string& name) {
    return name.ends_with(".rotary_emb.inv_freq");
}

Format format_of(const std::string& path) {
    if (path.ends_with(".safetensors")) return Format::kSafetensors;
    if (path.ends_with(".bin")) return Format::kPytorchBin;
    FOT_THROW(path, ": unknown checkpoint file type (expected *.safetensors or *.bin)");
}

class FileCheckpoint final : public Checkpoint {
  public:
    FileCheckpoint(std::string path, Format format) : path_(std::move(path)), format_(format) {}

    // Maps `file` and returns its tensors (inv_freq included).
    std::vector<TensorRecord> load(const std::string& file) {
        MappedFile m = MappedFile::open(file);
        std::vector<TensorRecord> r = format_of(file) == Format::kSafetensors
                                          ? parse_safetensors(m.data(), m.size(), file)
                                          : parse_pytorch_bin(m.data(), m.size(), file);
        files_->push_back(std::move(m));
        return r;
    }
    // Keeps the weights of `records` (drops inv_freq); names must be new.
    void add(std::vector<TensorRecord> records) {
        for (TensorRecord& r : records) {
            if (is_skipped(r.name)) {
                ++skipped_;
                continue;
            }
            tensors_.push_back(std::move(r));
        }
    }
    void finish() {
        std::sort(tensors_.begin(), tensors_.end(),
                  [](const TensorRecord& a, const TensorRecord& b) { return a.name < b.name; });
        for (size_t i = 1; i < tensors_.size(); ++i) {
            FOT_CHECK(tensors_[i].name != tensors_[i - 1].name, path_, ": tensor ",
                      safe_quote(tensors_[i].name), " appears in both ", tensors_[i - 1].file,
                      " and ", tensors_[i].file);
        }
    }

    const std::vector<TensorRecord>& tensors() const override { return tensors_; }
    const TensorRecord* find(const std::string& name) const override {
        auto it = std::lower_bound(
            tensors_.begin(), tensors_.end(), name,
            [](const TensorRecord& r, const std::string& n) { return r.name < n; });
        return it != tensors_.end() && it->name == name ? &*it : nullptr;
    }
    std::string describe() const override {
        std::string s = format_ == Format::kSafetensors ? "safetensors" : "pytorch .bin";
        s += files_->size() == 1 ? ", 1 file" : str(", ", files_->size(), " shards");
        return s;
    }
    std::string path() const override { return path_; }
    std::shared_ptr<const void> retain() const override { return files_; }

  private:
    std::string path_;
    Format format_;
    // Shared so that weights used in place keep the mappings (retain()); MappedFile objects
    // move without remapping, so pointers stay valid as the vector grows.
    std::shared_ptr<std::vector<MappedFile>> files_ = std::make_shared<std::vector<MappedFile>>();
    std::vector<TensorRecord> tensors_;
    size_t skipped_ = 0;
};

std::string read_text_file(const std::string& path) {
    MappedFile m = MappedFile::open(path);
    if (m.size() == 0) return {};
    return std::string(reinterpret_cast<const char*>(m.data()), m.size());
}

// Reads "<dir>/<index>" ({"weight_map": {tensor: shard file}}), maps every shard once and
// checks that each shard holds exactly the tensors the index assigns to it.
void load_indexed(FileCheckpoint& ckpt, const std::string& dir, const std::string& index_name) {
    const std::string index_path = (fs::path(dir) / index_name).string();
    const nlohmann::json j = parse_json_strict(read_text_file(index_path), index_path);
    FOT_CHECK(j.is_object(), index_path, ": not a JSON object");
    auto wm = j.find("weight_map");
    FOT_CHECK(wm != j.end() && wm->is_object(), index_path,
              ": missing or non-object \"weight_map\"");
    FOT_CHECK(!wm->empty(), index_path, ": \"weight_map\" is empty");
    std::map<std::string, std::set<std::string>> by_shard;
    for (const auto& [name, shard] : wm->items()) {
        FOT_CHECK(shard.is_string(), index_path, ": weight_map entry ", safe_quote(name),
                  " is not a file name");
        const std::string s = shard.get<std::string>();
        FOT_CHECK(!s.empty() && s.find('/') == std::string::npos && s != "." && s != "..",
                  index_path, ": weight_map entry ", safe_quote(name), " names ", safe_quote(s),
                  ", which is not a file in the model directory");
        by_shard[s].insert(name);
    }
    for (const auto& [shard, names] : by_shard) {
        const std::string shard_path = (fs::path(dir) / shard).string();
        std::error_code ec;
        FOT_CHECK(fs::is_regular_file(shard_path, ec), index_path, ": shard ", safe_quote(shard),
                  " listed in weight_map does not exist in ", dir);
        std::vector<TensorRecord> records = ckpt.load(shard_path);
        std::set<std::string> present;
        for (const TensorRecord& r : records) {
            present.insert(r.name);
            FOT_CHECK(names.count(r.name), shard_path, ": tensor ", safe_quote(r.name),
                      " is not assigned to this shard by ", index_path);
        }
        for (const std::string& n : names) {
            FOT_CHECK(present.count(n), index_path, ": tensor ", safe_quote(n), " is listed for ",
                      safe_quote(shard), " but absent from that file");
        }
        ckpt.add(std::move(records));
    }
}

// Weight-looking files in `dir`, for a helpful "no weights found" message.
std::string stray_weight_files(const std::string& dir) {
    std::string found;
    int count = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string n = e.path().filename().string();
        for (const char* ext : {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt"}) {
            if (n.ends_with(ext)) {
                if (++count <= 3) found += (found.empty() ? "" : ", ") + n;
                break;
            }
        }
    }
    if (count > 3) found += str(" and ", count - 3, " more");
    return found;
}

}  // namespace

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& dir) {
    std::error_code ec;
    FOT_CHECK(fs::exists(dir, ec), dir, ": no such model directory");
    FOT_CHECK(fs::is_directory(dir, ec), dir,
              ": not a directory (pass the model folder, or use a file with open_file)");
    auto has = [&](const char* name) { return fs::is_regular_file(fs::path(dir) / name, ec); };
    if (has("model.safetensors.index.json")) {
        auto c = std::make_unique<FileCheckpoint>(dir, Format::kSafetensors);
        load_indexed(*c, dir, "model.safetensors.index.json");
        c->finish();
        return c;
    }
    if (has("model.safetensors")) {
        auto c = std::make_unique<FileCheckpoint>(dir, Format::kSafetensors);
        c->add(c->load((fs::path(dir) / "model.safetensors").string()));
        c->finish();
        return c;
    }
    if (has("pytorch_model.bin.index.json")) {
        auto c = std::make_unique<FileCheckpoint>(dir, Format::kPytorchBin);
        load_indexed(*c, dir, "pytorch_model.bin.index.json");
        c->finish();
        return c;
    }
    if (has("pytorch_model.bin")) {
        auto c = std::make_unique<FileCheckpoint>(dir, Format::kPytorchBin);
        c->add(c->load((fs::path(dir) / "pytorch_model.bin").string()));
        c->finish();
        return c;
    }
    const std::string stray = stray_weight_files(dir);
    FOT_THROW(dir,
              ": no weights found (expected model.safetensors, model.safetensors.index.json, "
              "pytorch_model.bin or pytorch_model.bin.index.json)",
              stray.empty() ? "" : "; found " + stray + " (is an index file missing?)");
}

std::unique_ptr<Checkpoint> Checkpoint::open_file(const std::string& path) {
    auto c = std::make_unique<FileCheckpoint>(path, format_of(path));
    c->add(c->load(path));
    c->finish();
    return c;
}

}  // namespace fot
