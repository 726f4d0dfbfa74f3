#include "runtime/io/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "runtime/core/status.h"
#include "runtime/io/quote.h"
#include "runtime/io/safetensors.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

struct Planned {
    const TensorRecord* t;
    DType out_dtype;
    size_t out_bytes;
};

bool is_float(DType t) {
    return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

// A file written under "<path>.tmp" and renamed to `path` by commit().
class AtomicFile {
  public:
    explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
        f_ = std::fopen(tmp_.c_str(), "wb");
        FOT_CHECK(f_ != nullptr, tmp_, ": cannot create: ", std::strerror(errno));
    }
    ~AtomicFile() {
        if (f_ != nullptr) {
            std::fclose(f_);
            std::remove(tmp_.c_str());
        }
    }
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* p, size_t n) {
        FOT_CHECK(n == 0 || std::fwrite(p, 1, n, f_) == n, tmp_,
                  ": write failed: ", std::strerror(errno));
    }
    void commit() {
        std::FILE* f = f_;
        f_ = nullptr;
        if (std::fclose(f) != 0) {
            int err = errno;
            std::remove(tmp_.c_str());
            FOT_THROW(tmp_, ": write failed: ", std::strerror(err));
        }
        std::error_code ec;
        fs::rename(tmp_, path_, ec);
        if (ec) {
            std::remove(tmp_.c_str());
            FOT_THROW(path_, ": cannot rename from ", tmp_, ": ", ec.message());
        }
    }

  private:
    std::string path_, tmp_;
    std::FILE* f_ = nullptr;
};

// Writes the bytes of `p` converted to its output dtype, in bounded chunks.
void write_tensor(AtomicFile& f, const Planned& p) {
    const TensorRecord& t = *p.t;
    if (p.out_dtype == t.dtype) {
        f.write(t.data, t.nbytes);
        return;
    }
    const int64_t n = shape_numel(t.shape);
    TensorRecord flat = t;
    flat.shape = {n};
    constexpr int64_t kChunk = 1 << 20;
    std::vector<uint8_t> buf(static_cast<size_t>(std::min(n, kChunk)) * dtype_size(p.out_dtype));
    for (int64_t b = 0; b < n; b += kChunk) {
        const int64_t e = std::min(n, b + kChunk);
        copy_tensor_slice(flat, 0, 1, b, e, buf.data(), p.out_dtype);
        f.write(buf.data(), static_cast<size_t>(e - b) * dtype_size(p.out_dtype));
    }
}

void write_shard(const std::string& path, const std::vector<Planned>& shard, size_t* done,
                 size_t total, const SafetensorsWriteOptions& options) {
    nlohmann::ordered_json header;
    header["__metadata__"] = {{"format", "pt"}};
    size_t offset = 0;
    for (const Planned& p : shard) {
        header[p.t->name] = {{"dtype", safetensors_dtype_name(p.out_dtype)},
                             {"shape", p.t->shape},
                             {"data_offsets", {offset, offset + p.out_bytes}}};
        offset += p.out_bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));

    AtomicFile f(path);
    f.write(len, 8);
    f.write(text.data(), text.size());
    const std::string name = fs::path(path).filename().string();
    for (const Planned& p : shard) {
        write_tensor(f, p);
        ++*done;
        if (options.progress) options.progress(*done, total, name);
    }
    f.commit();
}

}  // namespace

std::string safetensors_shard_name(size_t index, size_t count) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index, count);
    return buf;
}

SafetensorsWriteResult write_safetensors(const std::string& dir,
                                         const std::vector<TensorRecord>& tensors,
                                         size_t max_shard_bytes,
                                         const SafetensorsWriteOptions& options) {
    FOT_CHECK(!tensors.empty(), dir, ": no tensors to write");
    FOT_CHECK(max_shard_bytes > 0, dir, ": the maximum shard size must be positive");
    FOT_CHECK(!options.dtype || is_float(*options.dtype), dir, ": cannot write tensors as ",
              dtype_name(*options.dtype), " (f32, bf16 or f16)");
    std::vector<Planned> plan;
    for (const TensorRecord& t : tensors) {
        const int64_t numel = shape_numel(t.shape);
        FOT_CHECK(t.nbytes == static_cast<size_t>(numel) * dtype_size(t.dtype), t.file, ": tensor ",
                  safe_quote(t.name), " holds ", t.nbytes, " bytes, not ", shape_str(t.shape),
                  " x ", dtype_name(t.dtype));
        const DType out = options.dtype && is_float(t.dtype) ? *options.dtype : t.dtype;
        plan.push_back({&t, out, static_cast<size_t>(numel) * dtype_size(out)});
    }
    std::sort(plan.begin(), plan.end(),
              [](const Planned& a, const Planned& b) { return a.t->name < b.t->name; });
    for (size_t i = 1; i < plan.size(); ++i) {
        FOT_CHECK(plan[i].t->name != plan[i - 1].t->name, dir, ": tensor ",
                  safe_quote(plan[i].t->name), " given twice");
    }
    std::vector<std::vector<Planned>> shards(1);
    size_t shard_bytes = 0, total_bytes = 0;
    for (const Planned& p : plan) {
        if (!shards.back().empty() && shard_bytes + p.out_bytes > max_shard_bytes) {
            shards.emplace_back();
            shard_bytes = 0;
        }
        shards.back().push_back(p);
        shard_bytes += p.out_bytes;
        total_bytes += p.out_bytes;
    }

    std::error_code ec;
    fs::create_directories(dir, ec);
    FOT_CHECK(!ec, dir, ": cannot create directory: ", ec.message());
    SafetensorsWriteResult result;
    result.total_bytes = total_bytes;
    size_t done = 0;
    if (shards.size() == 1) {
        const std::string path = (fs::path(dir) / "model.safetensors").string();
        write_shard(path, shards[0], &done, plan.size(), options);
        result.files.push_back(path);
        return result;
    }
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
        const std::string name = safetensors_shard_name(s + 1, shards.size());
        const std::string path = (fs::path(dir) / name).string();
        write_shard(path, shards[s], &done, plan.size(), options);
        result.files.push_back(path);
        for (const Planned& p : shards[s]) weight_map[p.t->name] = name;
    }
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    index["weight_map"] = std::move(weight_map);
    const std::string text = index.dump(2) + "\n";
    const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
    AtomicFile f(index_path);
    f.write(text.data(), text.size());
    f.commit();
    result.files.push_back(index_path);
    return result;
}

void write_safetensors(const std::string& dir, const std::vector<TensorRecord>& tensors,
                       size_t max_shard_bytes) {
    write_safetensors(dir, tensors, max_shard_bytes, SafetensorsWriteOptions{});
}

}  // namespace fot
