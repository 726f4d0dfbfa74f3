#include "runtime/io/convert.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/model_config.h"
#include "runtime/core/status.h"
#include "runtime/io/checkpoint.h"
#include "runtime/io/quote.h"
#include "runtime/io/safetensors_writer.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

bool is_weight_file(const std::string& n) {
    return n.ends_with(".safetensors") || n == "model.safetensors.index.json" ||
           (n.starts_with("pytorch_model") &&
            (n.ends_with(".bin") || n.ends_with(".bin.index.json")));
}

std::vector<fs::path> weight_files_in(const std::string& dir) {
    std::vector<fs::path> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (is_weight_file(e.path().filename().string())) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    FOT_CHECK(in.good(), p.string(), ": cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    FOT_CHECK(out.good(), p.string(), ": cannot write");
}

const char* torch_dtype_name(DType t) {
    switch (t) {
        case DType::kF32:
            return "float32";
        case DType::kBF16:
            return "bfloat16";
        case DType::kF16:
            return "float16";
        default:
            return dtype_name(t);
    }
}

}  // namespace

const std::vector<std::string>& convert_side_files() {
    static const std::vector<std::string> kFiles = {"tokenizer.model", "tokenizer_config.json",
                                                    "special_tokens_map.json",
                                                    "generation_config.json"};
    return kFiles;
}

ConvertSummary convert_checkpoint(const ConvertOptions& o) {
    std::error_code ec;
    FOT_CHECK(fs::is_directory(o.from, ec), o.from, ": not a model directory");
    FOT_CHECK(!fs::exists(o.to, ec) || fs::is_directory(o.to, ec), o.to,
              ": exists and is not a directory");
    FOT_CHECK(!fs::exists(o.to, ec) || !fs::equivalent(o.from, o.to, ec), o.to,
              ": is the source directory; convert into a different one");
    FOT_CHECK(
        !o.dtype || *o.dtype == DType::kF32 || *o.dtype == DType::kBF16 || *o.dtype == DType::kF16,
        "--dtype ", dtype_name(*o.dtype), " is not a weight dtype (f32, bf16, f16)");

    // Validate everything before touching the destination.
    const fs::path config_path = fs::path(o.from) / "config.json";
    const ModelConfig config = load_model_config(config_path.string()).value();
    std::unique_ptr<Checkpoint> ckpt = Checkpoint::open(o.from);
    validate_llama_checkpoint(*ckpt, config);

    if (fs::exists(o.to, ec)) {
        const std::vector<fs::path> existing = weight_files_in(o.to);
        if (!existing.empty()) {
            FOT_CHECK(o.force, o.to, ": already holds weight files (",
                      existing.front().filename().string(),
                      existing.size() > 1 ? str(" and ", existing.size() - 1, " more") : "",
                      "); pass --force to replace them");
            for (const fs::path& p : existing) {
                fs::remove(p, ec);
                FOT_CHECK(!ec, p.string(), ": cannot remove: ", ec.message());
            }
        }
    }

    ConvertSummary summary;
    summary.source = ckpt->describe();
    summary.tensors = ckpt->tensors().size();
    SafetensorsWriteOptions wo;
    wo.dtype = o.dtype;
    wo.progress = o.progress;
    SafetensorsWriteResult written =
        write_safetensors(o.to, ckpt->tensors(), o.max_shard_bytes, wo);
    summary.files = written.files;
    summary.weight_bytes = written.total_bytes;

    const fs::path config_out = fs::path(o.to) / "config.json";
    if (o.dtype) {
        nlohmann::ordered_json j =
            nlohmann::ordered_json::parse(read_file(config_path), nullptr, /*allow_exceptions=*/
                                          false);
        FOT_CHECK(j.is_object(), config_path.string(), ": invalid JSON");
        j["torch_dtype"] = torch_dtype_name(*o.dtype);
        write_file(config_out, j.dump(2) + "\n");
    } else {
        fs::copy_file(config_path, config_out, fs::copy_options::overwrite_existing, ec);
        FOT_CHECK(!ec, config_out.string(), ": cannot copy config.json: ", ec.message());
    }
    summary.files.push_back(config_out.string());
    for (const std::string& side : convert_side_files()) {
        const fs::path src = fs::path(o.from) / side;
        if (!fs::is_regular_file(src, ec)) continue;
        const fs::path dst = fs::path(o.to) / side;
        fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
        FOT_CHECK(!ec, dst.string(), ": cannot copy ", side, ": ", ec.message());
        summary.files.push_back(dst.string());
    }

    // Read back what was written: same tensor names, valid checkpoint.
    std::unique_ptr<Checkpoint> check = Checkpoint::open(o.to);
    validate_llama_checkpoint(*check, config);
    FOT_CHECK(check->tensors().size() == ckpt->tensors().size(), o.to, ": wrote ",
              check->tensors().size(), " tensors but the source has ", ckpt->tensors().size());
    return summary;
}

}  // namespace fot
