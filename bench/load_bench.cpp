// Load benchmark ([F14]): how fast a checkpoint loads and how much host memory it takes.
//
//   fot_load_bench generate --dir D [--size-mb N | --preset real|7b] [--dtype f32|bf16]
//                           [--format safetensors|bin] [--shard-mb N] [--unaligned]
//   fot_load_bench load --dir D [--tokens 3] [--copy] [--cold] [--max-rss-ratio R]
//
// `generate` writes a LongLLaMA model directory (config.json + weights) of random values,
// streamed tensor by tensor, so a checkpoint larger than memory can be made. `load` (run it as
// a fresh process: peak RSS is per process) opens it, loads the weights on the CPU backend
// as a session does, reads every weight page once (zero-copy weights are only read on first
// use: "resident" is load + that first touch), runs a short prompt, and prints seconds, GB/s
// and the peak RSS growth (VmHWM from /proc/self/status minus VmRSS before the load) against
// the weight bytes. --max-rss-ratio makes it exit 1 when the growth exceeds R x weight bytes
// (the CI test). Warm cache: run `load` right after `generate`, or twice. Cold cache: --cold
// (evicts the checkpoint's files from the page cache first; no root needed).
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/model_config.h"
#include "launch/args.h"
#include "parallel/self_communicator.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/core/dtype.h"
#include "runtime/core/host_memory.h"
#include "runtime/core/status.h"
#include "runtime/core/timer.h"
#include "runtime/io/checkpoint.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/weights.h"

namespace {

using namespace fot;
namespace fs = std::filesystem;

struct BenchOptions {
    std::string dir;
    int64_t size_mb = 256;
    std::string preset;  // "" | real | 7b
    DType dtype = DType::kF32;
    std::string format = "safetensors";
    int64_t shard_mb = 0;  // 0: one file (safetensors), 2 shards (bin)
    bool unaligned = false;
    int64_t tokens = 3;
    bool copy = false;
    bool cold = false;
    double max_rss_ratio = 0;
};

const OptionTable<BenchOptions>& generate_options() {
    static const OptionTable<BenchOptions> table = [] {
        OptionTable<BenchOptions> t;
        t.add(flag("dir", "DIR", "model directory to write (created; must not hold weights)")
                  .must_be_given(),
              FOT_FIELD(dir), text_value());
        t.add(flag("size-mb", "N", "approximate weight bytes in MB (layers are added to reach it)"),
              FOT_FIELD(size_mb), integer<int64_t>(1));
        t.add(flag("preset", "real|7b",
                   "real: hidden 3200, 4 layers (2.8 GB f32); 7b: LongLLaMA-Code-7B shape "
                   "(13.5 GB bf16); overrides --size-mb"),
              FOT_FIELD(preset), string_choice({"real", "7b"}));
        t.add(flag("dtype", "DTYPE", "weight dtype f32|bf16"), FOT_FIELD(dtype),
              choice<DType>(
                  "f32 or bf16",
                  [](const std::string& s, DType* out) { return parse_compute_dtype(s, out); },
                  [](const DType& d) { return std::string(dtype_name(d)); }));
        t.add(flag("format", "safetensors|bin", "file format"), FOT_FIELD(format),
              string_choice({"safetensors", "bin"}));
        t.add(flag("shard-mb", "N", "largest shard in MB (sharded files + index json)")
                  .default_is("one file for safetensors, two shards for bin"),
              FOT_FIELD(shard_mb), integer<int64_t>(0));
        t.add(switch_flag("unaligned",
                          "safetensors: misalign the data section (odd offset) so that no tensor "
                          "can be used in place"),
              FOT_FIELD(unaligned), boolean_value());
        return t;
    }();
    return table;
}

const OptionTable<BenchOptions>& load_options() {
    static const OptionTable<BenchOptions> table = [] {
        OptionTable<BenchOptions> t;
        t.add(flag("dir", "DIR", "model directory (config.json + weights)").must_be_given(),
              FOT_FIELD(dir), text_value());
        t.add(flag("tokens", "N", "prompt length run after the load (0: none)"), FOT_FIELD(tokens),
              integer<int64_t>(0));
        t.add(switch_flag("copy", "copy every weight (no use in place from the mapping)"),
              FOT_FIELD(copy), boolean_value());
        t.add(switch_flag("cold",
                          "evict the directory's files from the page cache first (fsync + "
                          "posix_fadvise DONTNEED: a cold-cache load without root)"),
              FOT_FIELD(cold), boolean_value());
        t.add(flag("max-rss-ratio", "R",
                   "exit 1 when the peak RSS growth exceeds R x the weight bytes")
                  .default_is("no check"),
              FOT_FIELD(max_rss_ratio), real(0.0));
        return t;
    }();
    return table;
}

// ---- generate -----------------------------------------------------------------------------

struct GenTensor {
    std::string name;
    Shape shape;
    bool ones = false;  // norm weights
    size_t nbytes = 0;
};

ModelConfig bench_config(const BenchOptions& b) {
    ModelConfig c;
    c.mem_dtype = DType::kBF16;
    if (b.preset == "real") {
        c.hidden_size = 3200, c.num_attention_heads = 32, c.intermediate_size = 8640;
        c.vocab_size = 32000, c.max_position_embeddings = 2048, c.last_context_length = 1024;
        c.num_hidden_layers = 4, c.mem_layers = {1, 3};
    } else if (b.preset == "7b") {
        c.hidden_size = 4096, c.num_attention_heads = 32, c.intermediate_size = 11008;
        c.vocab_size = 32016, c.max_position_embeddings = 4096, c.last_context_length = 3072;
        c.num_hidden_layers = 32, c.mem_layers = {8, 16, 24};
    } else {
        c.hidden_size = 1024, c.num_attention_heads = 16, c.intermediate_size = 2752;
        c.vocab_size = 8000, c.max_position_embeddings = 256, c.last_context_length = 128;
        const int64_t es = static_cast<int64_t>(dtype_size(b.dtype));
        const int64_t C = c.hidden_size, I = c.intermediate_size;
        const int64_t fixed = (2 * c.vocab_size * C + C) * es;
        const int64_t per_layer = (4 * C * C + 3 * C * I + 2 * C) * es;
        const int64_t want = b.size_mb * 1000000;
        c.num_hidden_layers = std::max<int64_t>(2, (want - fixed + per_layer / 2) / per_layer);
        c.mem_layers = {1};
    }
    validate_model_config(c, "fot_load_bench").check();
    return c;
}

std::vector<GenTensor> gen_tensors(const ModelConfig& c, DType dt) {
    std::vector<GenTensor> out;
    for (const ExpectedTensor& e : expected_llama_tensors(c)) {
        GenTensor g;
        g.name = e.name;
        g.shape = e.shape;
        g.ones = e.shape.size() == 1;
        g.nbytes = shape_nbytes(e.shape, dt);
        out.push_back(std::move(g));
    }
    std::sort(out.begin(), out.end(),
              [](const GenTensor& a, const GenTensor& b) { return a.name < b.name; });
    return out;
}

class Writer {
  public:
    explicit Writer(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
        FOT_CHECK(f_, path, ": cannot create: ", std::strerror(errno));
    }
    ~Writer() {
        if (f_) std::fclose(f_);
    }
    void write(const void* p, size_t n) {
        FOT_CHECK(n == 0 || std::fwrite(p, 1, n, f_) == n, path_, ": write failed (disk full?)");
        pos_ += n;
    }
    void le(uint64_t v, int bytes) {
        uint8_t b[8];
        for (int i = 0; i < bytes; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
        write(b, static_cast<size_t>(bytes));
    }
    uint64_t pos() const { return pos_; }
    void close() {
        FOT_CHECK(std::fclose(f_) == 0, path_, ": close failed (disk full?)");
        f_ = nullptr;
    }

  private:
    std::string path_;
    std::FILE* f_;
    uint64_t pos_ = 0;
};

// Random values in [-0.03, 0.03] (norm weights 1), in dt, streamed in 4 MiB chunks.
void write_values(Writer& w, const GenTensor& t, DType dt, uint64_t& seed) {
    const size_t es = dtype_size(dt), n = t.nbytes / es;
    const size_t chunk = (size_t{4} << 20) / 4;
    std::vector<float> f(std::min(n, chunk));
    std::vector<uint8_t> out(f.size() * es);
    for (size_t i = 0; i < n; i += chunk) {
        const size_t m = std::min(chunk, n - i);
        for (size_t j = 0; j < m; ++j) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            f[j] = t.ones ? 1.0f
                          : static_cast<float>(static_cast<int64_t>(seed >> 40) - (1 << 23)) *
                                (0.03f / (1 << 23));
        }
        if (dt == DType::kF32) {
            std::memcpy(out.data(), f.data(), m * 4);
        } else {
            convert_from_f32(f.data(), out.data(), dt, m);
        }
        w.write(out.data(), m * es);
    }
}

// Tensors grouped into shards of at most `max_bytes` (at least one tensor each).
std::vector<std::vector<const GenTensor*>> shard(const std::vector<GenTensor>& ts,
                                                 uint64_t max_bytes) {
    std::vector<std::vector<const GenTensor*>> shards(1);
    uint64_t in = 0;
    for (const GenTensor& t : ts) {
        if (!shards.back().empty() && in + t.nbytes > max_bytes) {
            shards.emplace_back();
            in = 0;
        }
        shards.back().push_back(&t);
        in += t.nbytes;
    }
    return shards;
}

void write_safetensors_file(const std::string& path, const std::vector<const GenTensor*>& ts,
                            DType dt, bool unaligned, uint64_t& seed) {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    uint64_t off = 0;
    for (const GenTensor* t : ts) {
        h[t->name] = {{"dtype", dt == DType::kF32 ? "F32" : "BF16"},
                      {"shape", t->shape},
                      {"data_offsets", {off, off + t->nbytes}}};
        off += t->nbytes;
    }
    std::string text = h.dump();
    // Padded so that the data section starts 8-aligned (as the safetensors library does), or
    // at an odd offset with --unaligned.
    text.append((8 - text.size() % 8) % 8 + (unaligned ? 1 : 0), ' ');
    Writer w(path);
    w.le(text.size(), 8);
    w.write(text.data(), text.size());
    for (const GenTensor* t : ts) write_values(w, *t, dt, seed);
    w.close();
}

// A stored zip as torch.save writes it (no zip64: shards stay under 4 GiB): "archive/data.pkl"
// (a dict of name -> tensor) and one "archive/data/<k>" storage per tensor, each member's data
// 64-byte aligned through padding in the local header's extra field.
void write_bin_file(const std::string& path, const std::vector<const GenTensor*>& ts, DType dt,
                    uint64_t& seed) {
    std::vector<uint8_t> pkl;
    auto op = [&](uint8_t c) { pkl.push_back(c); };
    auto raw = [&](const std::string& s) { pkl.insert(pkl.end(), s.begin(), s.end()); };
    auto le = [&](uint64_t v, int n) {
        for (int i = 0; i < n; ++i) pkl.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    auto str = [&](const std::string& s) {
        op('X');
        le(s.size(), 4);
        raw(s);
    };
    auto integer = [&](int64_t v) {
        op(0x8a);
        op(8);
        le(static_cast<uint64_t>(v), 8);
    };
    auto global = [&](const std::string& m, const std::string& n) {
        op('c');
        raw(m + "\n" + n + "\n");
    };
    const std::string storage = dt == DType::kF32 ? "FloatStorage" : "BFloat16Storage";
    op(0x80), op(2), op('}'), op('(');
    for (size_t k = 0; k < ts.size(); ++k) {
        const GenTensor& t = *ts[k];
        str(t.name);
        global("torch._utils", "_rebuild_tensor_v2");
        op('(');
        op('('), str("storage"), global("torch", storage), str(std::to_string(k)), str("cpu");
        integer(shape_numel(t.shape)), op('t'), op('Q');
        integer(0);
        op('(');
        for (int64_t s : t.shape) integer(s);
        op('t');
        op('(');
        int64_t stride = 1;
        std::vector<int64_t> strides(t.shape.size());
        for (size_t i = t.shape.size(); i-- > 0;) strides[i] = stride, stride *= t.shape[i];
        for (int64_t s : strides) integer(s);
        op('t');
        op(0x89);
        global("collections", "OrderedDict"), op(')'), op('R');
        op('t'), op('R');
    }
    op('u'), op('.');

    struct Member {
        std::string name;
        uint64_t offset, size;
    };
    std::vector<Member> members;
    Writer w(path);
    auto local = [&](const std::string& name, uint64_t size) {
        members.push_back({name, w.pos(), size});
        const uint64_t data_at = w.pos() + 30 + name.size() + 4;
        const uint64_t pad = (64 - data_at % 64) % 64;
        w.le(0x04034b50, 4), w.le(20, 2), w.le(0, 2), w.le(0, 2), w.le(0, 4), w.le(0, 4);
        w.le(size, 4), w.le(size, 4), w.le(name.size(), 2), w.le(4 + pad, 2);
        w.write(name.data(), name.size());
        w.le(0xcafe, 2), w.le(pad, 2);
        const std::vector<uint8_t> zeros(pad, 0);
        w.write(zeros.data(), pad);
    };
    local("archive/data.pkl", pkl.size());
    w.write(pkl.data(), pkl.size());
    for (size_t k = 0; k < ts.size(); ++k) {
        local("archive/data/" + std::to_string(k), ts[k]->nbytes);
        write_values(w, *ts[k], dt, seed);
    }
    FOT_CHECK(w.pos() < (uint64_t{1} << 32), path, ": shard over 4 GiB; use a smaller --shard-mb");
    const uint64_t cd = w.pos();
    for (const Member& m : members) {
        w.le(0x02014b50, 4), w.le(20, 2), w.le(20, 2), w.le(0, 2), w.le(0, 2), w.le(0, 4);
        w.le(0, 4), w.le(m.size, 4), w.le(m.size, 4), w.le(m.name.size(), 2), w.le(0, 2);
        w.le(0, 2), w.le(0, 2), w.le(0, 2), w.le(0, 4), w.le(m.offset, 4);
        w.write(m.name.data(), m.name.size());
    }
    const uint64_t cd_size = w.pos() - cd;
    w.le(0x06054b50, 4), w.le(0, 2), w.le(0, 2), w.le(members.size(), 2);
    w.le(members.size(), 2), w.le(cd_size, 4), w.le(cd, 4), w.le(0, 2);
    w.close();
}

int generate(const BenchOptions& b) {
    const ModelConfig c = bench_config(b);
    FOT_CHECK(b.dtype == DType::kF32 || b.dtype == DType::kBF16, "--dtype: f32 or bf16 (got ",
              dtype_name(b.dtype), ")");
    FOT_CHECK(!b.unaligned || b.format == "safetensors", "--unaligned needs --format safetensors");
    std::error_code ec;
    fs::create_directories(b.dir, ec);
    FOT_CHECK(fs::is_directory(b.dir, ec), b.dir, ": cannot create the directory");
    for (const auto& e : fs::directory_iterator(b.dir)) {
        const std::string n = e.path().filename().string();
        FOT_CHECK(!n.ends_with(".safetensors") && !n.ends_with(".bin") && !n.ends_with(".json"),
                  b.dir, ": already holds ", n, "; give an empty or new --dir");
    }
    {
        std::ofstream cfg(b.dir + "/config.json");
        cfg << model_config_to_json(c);
        FOT_CHECK(cfg.good(), b.dir, "/config.json: write failed");
    }
    const std::vector<GenTensor> ts = gen_tensors(c, b.dtype);
    uint64_t total = 0;
    for (const GenTensor& t : ts) total += t.nbytes;
    const bool bin = b.format == "bin";
    uint64_t max_shard = b.shard_mb > 0 ? static_cast<uint64_t>(b.shard_mb) * 1000000
                         : bin          ? total / 2 + 1
                                        : total;
    if (bin) max_shard = std::min<uint64_t>(max_shard, uint64_t{3} << 30);
    const auto shards = shard(ts, max_shard);
    Timer timer;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = nlohmann::ordered_json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
        char name[64];
        std::snprintf(name, sizeof name, "%s-%05zu-of-%05zu.%s", bin ? "pytorch_model" : "model",
                      i + 1, shards.size(), bin ? "bin" : "safetensors");
        std::string file = shards.size() == 1 ? (bin ? "pytorch_model.bin" : "model.safetensors")
                                              : std::string(name);
        for (const GenTensor* t : shards[i]) index["weight_map"][t->name] = file;
        if (bin) {
            write_bin_file(b.dir + "/" + file, shards[i], b.dtype, seed);
        } else {
            write_safetensors_file(b.dir + "/" + file, shards[i], b.dtype, b.unaligned, seed);
        }
    }
    if (shards.size() > 1) {
        std::ofstream idx(b.dir + "/" +
                          (bin ? "pytorch_model.bin.index.json" : "model.safetensors.index.json"));
        idx << index.dump(2);
        FOT_CHECK(idx.good(), b.dir, ": index write failed");
    }
    std::printf(
        "fot_load_bench generate: %s, %.1f MB %s %s in %zu file(s)%s, hidden %lld, %lld layers, "
        "in %.2f s\n",
        b.dir.c_str(), total / 1e6, dtype_name(b.dtype), b.format.c_str(), shards.size(),
        b.unaligned ? " (unaligned)" : "", (long long)c.hidden_size, (long long)c.num_hidden_layers,
        timer.seconds());
    return 0;
}

// ---- load ---------------------------------------------------------------------------------

// A "VmRSS:" style field of /proc/self/status, in bytes (-1 when absent).
int64_t status_bytes(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const size_t n = std::strlen(field);
    while (std::getline(in, line)) {
        if (line.compare(0, n, field) == 0) return std::stoll(line.substr(n)) * 1024;
    }
    return -1;
}

// Drops the clean page-cache pages of every file in `dir` (a cold-cache load of just this
// checkpoint, without root's drop_caches).
void evict_from_page_cache(const std::string& dir) {
    for (const auto& e : fs::directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        const int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
        FOT_CHECK(fd >= 0, e.path().string(), ": cannot open: ", std::strerror(errno));
        ::fdatasync(fd);
        const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        ::close(fd);
        FOT_CHECK(rc == 0, e.path().string(), ": posix_fadvise failed: ", std::strerror(rc));
    }
}

// CPU seconds (user + system) of this process so far: on a shared machine the wall time
// depends on the other load, the CPU time much less.
double cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

int load(const BenchOptions& b) {
    if (b.cold) evict_from_page_cache(b.dir);
    const std::string config_path = b.dir + "/config.json";
    const ModelConfig c = load_model_config(config_path).value();
    CpuBackend backend(0);
    parallel::SelfCommunicator self;
    // The peak is a high-water mark: reset it to the current RSS where the kernel allows
    // (clear_refs 5), so only the load and the prompt count.
    {
        std::ofstream clear("/proc/self/clear_refs");
        clear << "5";
    }
    const int64_t rss0 = status_bytes("VmRSS:");
    const double cpu0 = cpu_seconds();
    Timer timer;
    std::unique_ptr<Checkpoint> ckpt = Checkpoint::open(b.dir);
    const TensorRecord* q0 = ckpt->find("model.layers.0.self_attn.q_proj.weight");
    const DType wdt = q0 ? q0->dtype : DType::kF32;
    const Precision precision = wdt == DType::kF32 ? Precision::kExact : Precision::kFast;
    backend.set_precision(precision);
    ModelWeights w = load_model_weights(*ckpt, c, backend, 0, 1, precision, !b.copy);
    const std::string describe = ckpt->describe();
    ckpt.reset();
    const double load_s = timer.seconds();
    // First touch of every weight page (what the first forward would pay for in-place
    // weights): one read per 4 KiB.
    volatile uint8_t sink = 0;
    auto touch = [&](const Buffer& buf) {
        const auto* p = static_cast<const uint8_t*>(buf.data());
        uint8_t acc = 0;
        for (size_t i = 0; i < buf.nbytes(); i += 4096) acc ^= p[i];
        sink = sink ^ acc;
    };
    touch(w.embed), touch(w.norm), touch(w.lm_head);
    for (const LayerWeights& L : w.layers) {
        for (const Buffer* buf :
             {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.ln_in, &L.ln_post}) {
            touch(*buf);
        }
    }
    const double resident_s = timer.seconds();
    const double resident_cpu = cpu_seconds() - cpu0;
    const int64_t weight_bytes = w.bytes, mapped = w.mapped_bytes;
    double forward_s = 0;
    if (b.tokens > 0) {
        ModelOptions mo;
        mo.mem_dtype = c.mem_dtype;
        mo.last_context_length = c.last_context_length;
        mo.precision = precision;
        LongLlama model(c, std::move(w), backend, self, self, mo);
        Sequence seq = model.new_sequence();
        std::vector<int32_t> ids;
        for (int64_t i = 0; i < b.tokens; ++i) {
            ids.push_back(static_cast<int32_t>(3 + (i * 7919) % (c.vocab_size - 3)));
        }
        ForwardOptions fo;
        fo.logits = LogitsRows::kLast;
        fo.on_logits = [](int64_t, TensorView) {};
        Timer ft;
        model.forward(seq, ids, fo);
        forward_s = ft.seconds();
    }
    const int64_t peak = status_bytes("VmHWM:");
    const int64_t growth = peak - rss0;
    const double ratio = static_cast<double>(growth) / static_cast<double>(weight_bytes);
    std::printf(
        "fot_load_bench load: %s (%s, %s%s%s), %.1f MB of weights, %.1f MB in place\n"
        "  load %.3f s = %.2f GB/s; resident (load + first touch) %.3f s = %.2f GB/s "
        "(CPU time %.3f s); prompt of %lld tokens %.3f s\n"
        "  peak RSS growth %.1f MB = %.3fx the weight bytes (VmHWM %.1f MB, before %.1f MB)\n",
        b.dir.c_str(), describe.c_str(), dtype_name(wdt), b.copy ? ", --copy" : "",
        b.cold ? ", cold cache" : ", warm cache", weight_bytes / 1e6, mapped / 1e6, load_s,
        weight_bytes / 1e9 / load_s, resident_s, weight_bytes / 1e9 / resident_s, resident_cpu,
        (long long)b.tokens, forward_s, growth / 1e6, ratio, peak / 1e6, rss0 / 1e6);
    std::fflush(stdout);
    if (b.max_rss_ratio > 0 && ratio > b.max_rss_ratio) {
        std::fprintf(stderr,
                     "fot_load_bench: error: peak RSS growth %.1f MB is %.3fx the weight bytes, "
                     "over --max-rss-ratio %.2f\n",
                     growth / 1e6, ratio, b.max_rss_ratio);
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace fot;
    try {
        const std::vector<std::string> all(argv + 1, argv + argc);
        const std::string mode = all.empty() ? "" : all[0];
        const std::vector<std::string> rest(all.begin() + (all.empty() ? 0 : 1), all.end());
        BenchOptions b;
        if (mode == "generate") {
            cli::Args args("fot_load_bench generate",
                           "Writes a random LongLLaMA model directory to load.",
                           {"fot_load_bench generate --dir /tmp/m --size-mb 300 --dtype bf16",
                            "fot_load_bench generate --dir /tmp/m --preset real --format bin"});
            args.add(generate_options());
            if (!args.parse(rest)) return 0;
            args.apply(generate_options(), b);
            return generate(b);
        }
        if (mode == "load") {
            cli::Args args("fot_load_bench load",
                           "Loads a model directory on the CPU: seconds, GB/s, peak RSS.",
                           {"fot_load_bench load --dir /tmp/m",
                            "fot_load_bench load --dir /tmp/m --copy --max-rss-ratio 1.3"});
            args.add(load_options());
            if (!args.parse(rest)) return 0;
            args.apply(load_options(), b);
            return load(b);
        }
        if (mode == "--help" || mode == "-h") {
            std::printf(
                "fot_load_bench: checkpoint load time, GB/s and peak RSS.\n"
                "usage: fot_load_bench generate --dir DIR [--size-mb N | --preset real|7b] "
                "[--dtype f32|bf16] [--format safetensors|bin] [--shard-mb N] [--unaligned]\n"
                "       fot_load_bench load --dir DIR [--tokens N] [--copy] [--cold] "
                "[--max-rss-ratio R]\n"
                "examples:\n"
                "  fot_load_bench generate --dir /tmp/m --size-mb 300 --dtype bf16\n"
                "  fot_load_bench load --dir /tmp/m --max-rss-ratio 1.3\n"
                "each mode has its own --help\n");
            return 0;
        }
        FOT_THROW("expected a mode, generate or load (got '", mode, "'); see --help");
    } catch (const std::exception& e) {
        std::string msg = e.what();
        for (const std::string self : {"fot_load_bench generate: ", "fot_load_bench load: "}) {
            if (msg.rfind(self, 0) == 0) msg = msg.substr(self.size());
        }
        std::fprintf(stderr, "fot_load_bench: error: %s\n", msg.c_str());
        return 1;
    }
}
