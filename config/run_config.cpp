#include "config/run_config.h"

#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "runtime/core/logging.h"

namespace fot {

const char* retrieval_name(Retrieval r) {
    switch (r) {
        case Retrieval::kDense:
            return "dense";
        case Retrieval::kTopK:
            return "topk";
    }
    return "?";
}

bool parse_retrieval(std::string_view s, Retrieval* out) {
    if (s == "dense") {
        *out = Retrieval::kDense;
    } else if (s == "topk") {
        *out = Retrieval::kTopK;
    } else {
        return false;
    }
    return true;
}

bool parse_compute_dtype(std::string_view s, DType* out) {
    DType t;
    if (!parse_dtype(s, &t) || (t != DType::kF32 && t != DType::kBF16)) return false;
    *out = t;
    return true;
}

bool parse_storage_dtype(std::string_view s, DType* out) {
    DType t;
    if (!parse_dtype(s, &t) || (t != DType::kF32 && t != DType::kBF16 && t != DType::kF16)) {
        return false;
    }
    *out = t;
    return true;
}

const OptionTable<RunConfig>& run_options() {
    static const OptionTable<RunConfig> table = [] {
        auto dtype_text = [](const DType& t) { return std::string(dtype_name(t)); };
        OptionTable<RunConfig> t;
        t.add(flag("model", "DIR", "model directory (config.json, tokenizer.model, weights)")
                  .in_yaml("model"),
              FOT_FIELD(model), text_value());
        t.add(flag("backend", "cpu|cuda", "compute backend").in_yaml("backend"), FOT_FIELD(backend),
              string_choice({"cpu", "cuda"}));
        t.add(
            flag("dtype", "f32|bf16", "compute dtype (the CPU backend computes in f32)")
                .in_yaml("dtype"),
            FOT_FIELD(dtype),
            choice<DType>(
                "f32 or bf16",
                [](const std::string& s, DType* out) { return parse_compute_dtype(s, out); },
                dtype_text, [](const DType& d) { return d == DType::kF32 || d == DType::kBF16; }));
        t.add(flag("precision", "exact|fast",
                   "arithmetic: exact = fp32 (the golden contract), fast = bf16 GEMM/attention "
                   "operands with fp32 accumulation and bf16 local caches")
                  .in_yaml("precision")
                  .default_is("fast for bf16/f16 checkpoints, exact for f32"),
              FOT_FIELD(precision),
              choice<Precision>(
                  "exact or fast",
                  [](const std::string& s, Precision* out) { return parse_precision(s, out); },
                  [](const Precision& p) { return std::string(precision_name(p)); }));
        t.add(flag("threads", "N",
                   "CPU threads per rank, 0 = the cores this rank may use, shared with the other "
                   "ranks of its node")
                  .in_yaml("threads"),
              FOT_FIELD(threads), integer<int64_t>(0, 1024));
        t.add(flag("tp", "N", "tensor-parallel degree").in_yaml("parallel.tp"),
              FOT_FIELD(parallel.tp), integer<int64_t>(1));
        t.add(flag("mp", "N", "memory-parallel degree (memory split by blocks across N ranks)")
                  .in_yaml("parallel.mp"),
              FOT_FIELD(parallel.mp), integer<int64_t>(1));
        t.add(flag("retrieval", "dense|topk", "memory attention: exact dense or exact top-k")
                  .in_yaml("memory.retrieval"),
              FOT_FIELD(memory.retrieval),
              choice<Retrieval>(
                  "dense or topk",
                  [](const std::string& s, Retrieval* out) { return parse_retrieval(s, out); },
                  [](const Retrieval& r) { return std::string(retrieval_name(r)); }));
        t.add(flag("k", "N", "memory keys per (query, head) with --retrieval topk")
                  .in_yaml("memory.k"),
              FOT_FIELD(memory.k), positive_integer(int64_t{1} << 20));
        t.add(flag("mem-dtype", "bf16|f32|f16", "storage dtype of memory keys and values")
                  .in_yaml("memory.mem_dtype")
                  .default_is("config.json's mem_dtype"),
              FOT_FIELD(memory.mem_dtype),
              choice<DType>(
                  "bf16, f32 or f16",
                  [](const std::string& s, DType* out) { return parse_storage_dtype(s, out); },
                  dtype_text,
                  [](const DType& d) {
                      return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16;
                  }));
        t.add(flag("mem-capacity", "TOKENS",
                   "memory tokens per rank, e.g. 65536, 64k or 1m; 0 = unlimited")
                  .in_yaml("memory.capacity_tokens"),
              FOT_FIELD(memory.capacity_tokens), count(0));
        t.add(flag("mem-capacity-bytes", "SIZE",
                   "memory byte budget per rank, e.g. 8GiB or 512MB; 0 = no cap")
                  .in_yaml("memory.capacity_bytes"),
              FOT_FIELD(memory.capacity_bytes), byte_size(0));
        t.add(flag("last-context-length", "N", "tokens of the final window kept in the local cache")
                  .in_yaml("last_context_length")
                  .default_is("config.json's last_context_length"),
              FOT_FIELD(last_context_length), positive_integer());
        t.add(flag("log-level", "LEVEL", "error|warn|info|debug")
                  .in_yaml("log_level")
                  .default_is("FOT_LOG_LEVEL, else info"),
              FOT_FIELD(log_level),
              choice<std::string>(
                  "error, warn, info or debug",
                  [](const std::string& s, std::string* out) {
                      LogLevel level;
                      *out = s;
                      return parse_log_level(s, &level);
                  },
                  [](const std::string& s) { return s; },
                  // "" (the default) leaves the level to FOT_LOG_LEVEL.
                  [](const std::string& s) {
                      LogLevel level;
                      return s.empty() || parse_log_level(s, &level);
                  }));
        t.add(switch_flag("quiet",
                          "no progress lines on stderr (model load, prefill, decode, records)")
                  .in_yaml("quiet")
                  .default_is("off"),
              FOT_FIELD(quiet), boolean_value());
        return t;
    }();
    return table;
}

Status validate_run_config(const RunConfig& c, const std::string& origin) {
    const std::string problem = run_options().check(c);
    if (!problem.empty()) return Status::error(origin + ": " + problem);
    return Status::ok_status();
}

namespace {

struct ConfigError {
    std::string message;
};

std::string kind(const YAML::Node& n) {
    switch (n.Type()) {
        case YAML::NodeType::Null:
            return "nothing (null)";
        case YAML::NodeType::Sequence:
            return "a list";
        case YAML::NodeType::Map:
            return "a mapping";
        case YAML::NodeType::Scalar:
            return "'" + n.Scalar() + "'";
        default:
            return "an undefined node";
    }
}

// Reads a YAML document into a RunConfig, key by key through run_options(): a key path with
// a row is a value, a prefix of one ("memory") a mapping, anything else an unknown key. Every
// message carries the origin, the line and the dotted key path.
class Reader {
  public:
    // job: also take the top-level keys in job->keys out as scalars (a job YAML).
    Reader(const OptionTable<RunConfig>& table, std::string origin, JobYaml* job = nullptr,
           const std::set<std::string>* job_keys = nullptr)
        : table_(table), origin_(std::move(origin)), job_(job), job_keys_(job_keys) {}

    [[noreturn]] void fail(const YAML::Node& n, const std::string& path,
                           const std::string& what) const {
        std::string where = origin_;
        if (n.Mark().line >= 0) where += str(":", n.Mark().line + 1);
        throw ConfigError{str(where, ": ", path, path.empty() ? "" : " ", what)};
    }

    // The mapping at `path` ("" = the document).
    void mapping(const YAML::Node& n, const std::string& path, RunConfig& c) const {
        if (!n.IsMap()) {
            fail(n, path.empty() ? "the document" : path, str("must be a mapping, got ", kind(n)));
        }
        const std::string prefix = path.empty() ? "" : path + ".";
        std::set<std::string> known;  // the keys allowed here, sorted for the message
        for (const auto& o : table_.options()) {
            if (o.key.empty() || o.key.compare(0, prefix.size(), prefix) != 0) continue;
            const std::string rest = o.key.substr(prefix.size());
            known.insert(rest.substr(0, rest.find('.')));
        }
        std::set<std::string> seen;
        for (const auto& kv : n) {
            const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
            const std::string full = prefix + key;
            if (path.empty() && job_keys_ && job_keys_->count(key)) {
                job_value(kv.first, kv.second, key);
                continue;
            }
            if (!known.count(key)) {
                std::string list;
                for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
                fail(kv.first, "", str("unknown key '", full, "' (known here: ", list, ")"));
            }
            if (!seen.insert(key).second) fail(kv.first, full, "is given twice");
            if (const Option<RunConfig>* o = table_.find_key(full)) {
                value(*o, kv.second, full, c);
            } else {
                mapping(kv.second, full, c);
            }
        }
    }

  private:
    int line(const YAML::Node& n) const { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }

    void job_value(const YAML::Node& k, const YAML::Node& v, const std::string& key) const {
        auto [it, fresh] = job_->lines.emplace(key, line(k));
        if (!fresh) fail(k, key, str("is given twice (first at line ", it->second, ")"));
        if (v.IsNull()) fail(k, key, "has no value");
        if (!v.IsScalar()) {
            fail(v, key, str("must be a plain value (e.g. '", key, ": value'), got ", kind(v)));
        }
        job_->values[key] = v.Scalar();
    }

    void value(const Option<RunConfig>& o, const YAML::Node& n, const std::string& path,
               RunConfig& c) const {
        if (n.IsNull() && o.nullable) {
            o.reset(c);  // "key: ~" means the default: config.json's value, the checkpoint's
            return;
        }
        if (!n.IsScalar()) fail(n, path, str("expects ", o.expected, ", got ", kind(n)));
        const std::string problem = o.set(n.Scalar(), c);
        if (!problem.empty()) fail(n, path, problem);
    }

    const OptionTable<RunConfig>& table_;
    std::string origin_;
    JobYaml* job_;
    const std::set<std::string>* job_keys_;
};

// Records where the second document's content starts; ignores everything else.
class SecondDocumentFinder final : public YAML::EventHandler {
  public:
    int documents = 0;
    int second_line = -1;  // 0-based, -1 when unknown
    void OnDocumentStart(const YAML::Mark&) override { ++documents; }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& m, YAML::anchor_t) override { at(m); }
    void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { at(m); }
    void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  const std::string&) override {
        at(m);
    }
    void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
        at(m);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
        at(m);
    }
    void OnMapEnd() override {}

  private:
    void at(const YAML::Mark& m) {
        if (documents == 2 && second_line < 0) second_line = m.line;
    }
};

// The one document of `yaml_text`; a second one ("---") is an error: yaml-cpp's Load() would
// silently ignore it, and a user who wrote it meant its keys to apply. (Not LoadAll(): on
// some malformed inputs yaml-cpp 0.7 returns empty documents forever, allocating each; the
// parser is asked for at most two documents here.)
Status load_one_document(const std::string& yaml_text, const std::string& origin,
                         YAML::Node* root) {
    try {
        *root = YAML::Load(yaml_text);
        std::istringstream in(yaml_text);
        YAML::Parser parser(in);
        SecondDocumentFinder finder;
        if (parser.HandleNextDocument(finder) && parser.HandleNextDocument(finder)) {
            const int line = finder.second_line;
            return Status::error(str(origin, line >= 0 ? str(":", line + 1) : std::string(),
                                     ": a second YAML document (after '---') is not allowed; "
                                     "put every key in one document"));
        }
    } catch (const YAML::Exception& e) {
        return Status::error(str(origin, ":", e.mark.line + 1, ": invalid YAML: ", e.msg));
    }
    return Status::ok_status();
}

Result<RunConfig> parse(const std::string& yaml_text, const std::string& origin, JobYaml* job,
                        const std::set<std::string>* job_keys) {
    YAML::Node root;
    if (Status s = load_one_document(yaml_text, origin, &root); !s.ok()) return s;
    RunConfig c;
    try {
        // An empty file (or only comments) is a null document: all defaults.
        if (root && !root.IsNull())
            Reader(run_options(), origin, job, job_keys).mapping(root, "", c);
    } catch (const ConfigError& e) {
        return Status::error(e.message);
    } catch (const YAML::Exception& e) {
        return Status::error(str(origin, ":", e.mark.line + 1, ": ", e.msg));
    }
    Status s = validate_run_config(c, origin);
    if (!s.ok()) return s;
    return c;
}

}  // namespace

Result<RunConfig> parse_run_config(const std::string& yaml_text, const std::string& origin) {
    return parse(yaml_text, origin, nullptr, nullptr);
}

Result<JobYaml> parse_job_yaml(const std::string& yaml_text, const std::string& origin,
                               const std::set<std::string>& job_keys) {
    JobYaml job;
    Result<RunConfig> run = parse(yaml_text, origin, &job, &job_keys);
    if (!run.ok()) return run.status();
    job.run = std::move(run).value();
    return job;
}

Result<RunConfig> load_run_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::error(str(path, ": cannot open run config (no such file?)"));
    std::ostringstream os;
    os << in.rdbuf();
    if (in.bad()) return Status::error(str(path, ": read error"));
    return parse_run_config(os.str(), path);
}

}  // namespace fot
