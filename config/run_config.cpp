#include "config/run_config.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <vector>

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

Result<int64_t> parse_byte_size(const std::string& s) {
    auto bad = [&](const char* why) {
        return Status::error(str("invalid byte size '", s, "' (", why,
                                 "; expected e.g. 1000000, 512MB, 1.5GB or 8GiB)"));
    };
    size_t i = 0;
    while (i < s.size() && s[i] == ' ') ++i;
    size_t num_begin = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    std::string number = s.substr(num_begin, i - num_begin);
    while (i < s.size() && s[i] == ' ') ++i;
    std::string unit;
    for (; i < s.size() && s[i] != ' '; ++i) {
        unit += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
    }
    while (i < s.size() && s[i] == ' ') ++i;
    if (number.empty() || i != s.size()) return bad("not a number followed by a unit");
    if (number.find('.') != number.rfind('.') || number == ".") return bad("malformed number");

    static const std::map<std::string, long double> kUnits = {
        {"", 1.0L},
        {"b", 1.0L},
        {"kb", 1e3L},
        {"mb", 1e6L},
        {"gb", 1e9L},
        {"tb", 1e12L},
        {"kib", 1024.0L},
        {"mib", 1048576.0L},
        {"gib", 1073741824.0L},
        {"tib", 1099511627776.0L},
    };
    auto u = kUnits.find(unit);
    if (u == kUnits.end()) return bad("unknown unit");
    long double value = std::strtold(number.c_str(), nullptr) * u->second;
    if (!(value < static_cast<long double>(std::numeric_limits<int64_t>::max()))) {
        return bad("too large");
    }
    // Fractions of a byte ("1.5B") round down; a byte budget is a ceiling.
    return static_cast<int64_t>(std::floor(value));
}

Status validate_run_config(const RunConfig& c, const std::string& origin) {
    auto err = [&](const std::string& what) { return Status::error(origin + ": " + what); };
    if (c.backend != "cpu" && c.backend != "cuda") {
        return err(str("backend '", c.backend, "' is unknown (expected cpu or cuda)"));
    }
    if (c.dtype != DType::kF32 && c.dtype != DType::kBF16) {
        return err(str("dtype ", dtype_name(c.dtype), " is not a compute dtype (f32 or bf16)"));
    }
    if (c.threads < 0) return err(str("threads=", c.threads, " must be >= 0 (0 = all cores)"));
    if (c.parallel.tp < 1) return err(str("parallel.tp=", c.parallel.tp, " must be >= 1"));
    if (c.parallel.mp < 1) return err(str("parallel.mp=", c.parallel.mp, " must be >= 1"));
    if (c.memory.k < 1) return err(str("memory.k=", c.memory.k, " must be >= 1"));
    if (c.memory.mem_dtype && *c.memory.mem_dtype != DType::kF32 &&
        *c.memory.mem_dtype != DType::kBF16 && *c.memory.mem_dtype != DType::kF16) {
        return err(str("memory.mem_dtype ", dtype_name(*c.memory.mem_dtype),
                       " is not a storage dtype (bf16, f32 or f16)"));
    }
    if (c.memory.capacity_tokens < 0) {
        return err(
            str("memory.capacity_tokens=", c.memory.capacity_tokens, " must be >= 0 (0 = no cap)"));
    }
    if (c.memory.capacity_bytes < 0) {
        return err(
            str("memory.capacity_bytes=", c.memory.capacity_bytes, " must be >= 0 (0 = no cap)"));
    }
    if (c.last_context_length && *c.last_context_length < 1) {
        return err(str("last_context_length=", *c.last_context_length, " must be >= 1"));
    }
    LogLevel level;
    if (!c.log_level.empty() && !parse_log_level(c.log_level, &level)) {
        return err(str("log_level '", c.log_level,
                       "' is unknown (expected error, warn, info or "
                       "debug)"));
    }
    return Status::ok_status();
}

namespace {

struct ConfigError {
    std::string message;
};

// Walks the YAML tree; every message carries the origin, the dotted key path and the line.
class Reader {
  public:
    explicit Reader(std::string origin) : origin_(std::move(origin)) {}

    [[noreturn]] void fail(const YAML::Node& n, const std::string& path,
                           const std::string& what) const {
        std::string where = origin_;
        if (n.Mark().line >= 0) where += str(":", n.Mark().line + 1);
        throw ConfigError{str(where, ": ", path, path.empty() ? "" : " ", what)};
    }

    std::string scalar(const YAML::Node& n, const std::string& path, const char* expected) const {
        if (!n.IsScalar()) fail(n, path, str("must be ", expected, ", got ", kind(n)));
        return n.Scalar();
    }

    std::string string(const YAML::Node& n, const std::string& path) const {
        return scalar(n, path, "a string");
    }

    int64_t integer(const YAML::Node& n, const std::string& path, int64_t min,
                    const char* expected) const {
        std::string s = scalar(n, path, expected);
        int64_t v = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
            fail(n, path, str("must be ", expected, ", got '", s, "'"));
        }
        if (v < min) fail(n, path, str("must be ", expected, ", got ", v));
        return v;
    }

    // Visits each key of a mapping; unknown keys and duplicates are errors.
    void mapping(
        const YAML::Node& n, const std::string& path,
        const std::map<std::string, std::function<void(const YAML::Node&, const std::string&)>>&
            fields) {
        if (!n.IsMap())
            fail(n, path.empty() ? "the document" : path, str("must be a mapping, got ", kind(n)));
        std::set<std::string> seen;
        for (const auto& kv : n) {
            std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
            std::string full = path.empty() ? key : path + "." + key;
            auto it = fields.find(key);
            if (it == fields.end()) {
                std::string known;
                for (const auto& f : fields) known += (known.empty() ? "" : ", ") + f.first;
                fail(kv.first, "", str("unknown key '", full, "' (known here: ", known, ")"));
            }
            if (!seen.insert(key).second) fail(kv.first, full, "is given twice");
            it->second(kv.second, full);
        }
    }

  private:
    static std::string kind(const YAML::Node& n) {
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

    std::string origin_;
};

RunConfig parse_document(const YAML::Node& root, const std::string& origin) {
    RunConfig c;
    if (root.IsNull()) return c;  // an empty file: all defaults
    Reader r(origin);
    using Node = YAML::Node;
    using Path = std::string;

    auto choice = [&r](const Node& n, const Path& p, const char* options, auto parse) {
        std::string s = r.string(n, p);
        if (!parse(s)) r.fail(n, p, str("'", s, "' is unknown (expected ", options, ")"));
    };

    r.mapping(
        root, "",
        {
            {"model", [&](const Node& n, const Path& p) { c.model = r.string(n, p); }},
            {"backend",
             [&](const Node& n, const Path& p) {
                 choice(n, p, "cpu or cuda", [&](const std::string& s) {
                     c.backend = s;
                     return s == "cpu" || s == "cuda";
                 });
             }},
            {"dtype",
             [&](const Node& n, const Path& p) {
                 choice(n, p, "f32 or bf16",
                        [&](const std::string& s) { return parse_compute_dtype(s, &c.dtype); });
             }},
            {"precision",
             [&](const Node& n, const Path& p) {
                 if (n.IsNull()) {
                     c.precision.reset();
                     return;
                 }
                 Precision pr;
                 choice(n, p, "exact or fast",
                        [&](const std::string& s) { return parse_precision(s, &pr); });
                 c.precision = pr;
             }},
            {"threads",
             [&](const Node& n, const Path& p) {
                 c.threads = r.integer(n, p, 0, "an integer >= 0 (0 = all cores)");
             }},
            {"parallel",
             [&](const Node& n, const Path& p) {
                 r.mapping(n, p,
                           {
                               {"tp",
                                [&](const Node& m, const Path& q) {
                                    c.parallel.tp = r.integer(m, q, 1, "an integer >= 1");
                                }},
                               {"mp",
                                [&](const Node& m, const Path& q) {
                                    c.parallel.mp = r.integer(m, q, 1, "an integer >= 1");
                                }},
                           });
             }},
            {"memory",
             [&](const Node& n, const Path& p) {
                 r.mapping(n, p,
                           {
                               {"retrieval",
                                [&](const Node& m, const Path& q) {
                                    choice(m, q, "dense or topk", [&](const std::string& s) {
                                        return parse_retrieval(s, &c.memory.retrieval);
                                    });
                                }},
                               {"k",
                                [&](const Node& m, const Path& q) {
                                    c.memory.k = r.integer(m, q, 1, "a positive integer");
                                }},
                               {"mem_dtype",
                                [&](const Node& m, const Path& q) {
                                    if (m.IsNull()) {
                                        c.memory.mem_dtype.reset();
                                        return;
                                    }
                                    DType t;
                                    choice(m, q, "bf16, f32 or f16", [&](const std::string& s) {
                                        return parse_storage_dtype(s, &t);
                                    });
                                    c.memory.mem_dtype = t;
                                }},
                               {"capacity_tokens",
                                [&](const Node& m, const Path& q) {
                                    c.memory.capacity_tokens =
                                        r.integer(m, q, 0, "an integer >= 0 (0 = no cap)");
                                }},
                               {"capacity_bytes",
                                [&](const Node& m, const Path& q) {
                                    std::string s = r.scalar(m, q, "a byte size like 8GiB");
                                    Result<int64_t> bytes = parse_byte_size(s);
                                    if (!bytes.ok())
                                        r.fail(m, q, "is an " + bytes.status().message());
                                    c.memory.capacity_bytes = bytes.value();
                                }},
                           });
             }},
            {"last_context_length",
             [&](const Node& n, const Path& p) {
                 if (n.IsNull()) {
                     c.last_context_length.reset();
                     return;
                 }
                 c.last_context_length = r.integer(n, p, 1, "a positive integer");
             }},
            {"log_level",
             [&](const Node& n, const Path& p) {
                 choice(n, p, "error, warn, info or debug", [&](const std::string& s) {
                     LogLevel level;
                     c.log_level = s;
                     return parse_log_level(s, &level);
                 });
             }},
        });
    return c;
}

}  // namespace

Result<RunConfig> parse_run_config(const std::string& yaml_text, const std::string& origin) {
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
        return Status::error(str(origin, ":", e.mark.line + 1, ": invalid YAML: ", e.msg));
    }
    RunConfig c;
    try {
        c = parse_document(root, origin);
    } catch (const ConfigError& e) {
        return Status::error(e.message);
    } catch (const YAML::Exception& e) {
        return Status::error(str(origin, ":", e.mark.line + 1, ": ", e.msg));
    }
    Status s = validate_run_config(c, origin);
    if (!s.ok()) return s;
    return c;
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
