// fotrt batch: the resumable corpus runner (runtime/jobs/batch_job.h); every option can also
// come from the --config JOB.yaml (runtime/jobs/job_config.h).

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/batch_job.h"
#include "runtime/jobs/job_config.h"

namespace fot::cli {

namespace {

namespace fs = std::filesystem;

// The job options (flags with '-', YAML keys with '_').
const std::set<std::string> kJobKeys = {
    "task",           "input",       "output",  "offsets",
    "token_dtype",    "restart",     "summary", "progress_interval",
    "max_new_tokens", "temperature", "top_p",   "seed",
    "ignore_eos"};

std::unique_ptr<Args> make_args() {
    auto a = std::make_unique<Args>(
        "fotrt batch",
        "The corpus runner: scores documents or generates after them (--task), streams one\n"
        "JSON line per document to --output and journals it (OUT.jsonl.journal), so that\n"
        "rerunning the same command after a kill finishes the job with every record written\n"
        "exactly once. dp groups (world / (tp x mp)) pull documents from rank 0, longest first.\n"
        "Malformed or over-capacity records become error records (exit code 3). Ends with a\n"
        "summary JSON on stdout and in --summary. Every option can also be set in the\n"
        "--config YAML (run keys as in RUN.yaml, job keys like task: score, max_new_tokens: 32;\n"
        "flags win). See docs/jobs.md.",
        std::vector<std::string>{
            "fotrt batch --task score --model M --input docs.jsonl --output scores.jsonl",
            "fotrt batch --config job.yaml",
            "mpirun -np 8 fotrt batch --config job.yaml --tp 2 --mp 2",
            "fotrt batch --task generate --model M --input prompts.jsonl --output gen.jsonl "
            "--max-new-tokens 32"});
    a->option("task", "score|generate", "what to do with each document", "score");
    a->option("input", "CORPUS", "JSONL file, directory of .txt files, or a token .bin");
    a->option("output", "OUT.jsonl", "output records (written by rank 0, resumable)");
    a->option("offsets", "FILE", "offsets of a token .bin: n + 1 little-endian uint64",
              "the .bin path with .offsets");
    a->option("token-dtype", "u16|u32", "id width of a token .bin", "from the file sizes");
    a->flag("restart", "discard an existing output and journal and start over");
    a->option("summary", "FILE", "where to write the summary JSON", "OUT.jsonl.summary.json");
    a->option("progress-interval", "SECONDS",
              "seconds between progress lines when stderr is not a terminal; 0 = none", "30");
    a->option("max-new-tokens", "N", "generate: tokens per document", "64");
    a->option("temperature", "T", "generate: sampling temperature; 0 = greedy", "0");
    a->option("top-p", "P", "generate: nucleus sampling mass", "1");
    a->option("seed", "S", "generate: sampling seed (document i uses S + i)", "0");
    a->flag("ignore-eos", "generate: keep generating after the end-of-sequence token");
    add_run_options(*a);
    a->option("config", "JOB.yaml",
              "run keys (see docs/configuration.md) and job keys (the options above with _); "
              "flags given here override it");
    return a;
}

// A job option from the command line, else from the YAML, with its origin for messages.
struct JobValues {
    const Args& args;
    const JobYaml& yaml;
    std::string yaml_path;

    std::optional<std::string> raw(const std::string& flag, std::string* where) const {
        std::string key = flag;
        for (char& c : key) c = c == '-' ? '_' : c;
        if (args.has(flag)) {
            *where = "fotrt batch: --" + flag;
            return args.get(flag);
        }
        auto it = yaml.values.find(key);
        if (it == yaml.values.end()) return std::nullopt;
        *where = str(yaml_path, ":", yaml.lines.at(key), ": ", key);
        return it->second;
    }
    std::string text(const std::string& flag, const std::string& def = "") const {
        std::string where;
        return raw(flag, &where).value_or(def);
    }
    int64_t integer(const std::string& flag, int64_t def) const {
        std::string where;
        auto v = raw(flag, &where);
        if (!v) return def;
        char* end = nullptr;
        errno = 0;
        const long long x = std::strtoll(v->c_str(), &end, 10);
        FOT_CHECK(!v->empty() && *end == '\0' && errno == 0, where, " expects an integer, got '",
                  *v, "'");
        return x;
    }
    double number(const std::string& flag, double def) const {
        std::string where;
        auto v = raw(flag, &where);
        if (!v) return def;
        char* end = nullptr;
        errno = 0;
        const double x = std::strtod(v->c_str(), &end);
        FOT_CHECK(!v->empty() && *end == '\0' && errno == 0, where, " expects a number, got '", *v,
                  "'");
        return x;
    }
    bool boolean(const std::string& flag) const {
        std::string where;
        auto v = raw(flag, &where);
        if (!v) return false;
        if (args.has(flag)) return true;
        if (*v == "true" || *v == "yes" || *v == "on") return true;
        if (*v == "false" || *v == "no" || *v == "off") return false;
        FOT_THROW(where, " expects true or false, got '", *v, "'");
    }
    std::string required(const std::string& flag) const {
        std::string where;
        auto v = raw(flag, &where);
        std::string key = flag;
        for (char& c : key) c = c == '-' ? '_' : c;
        FOT_CHECK(v, "fotrt batch: --", flag, " is required (or '", key,
                  ":' in the --config YAML; see fotrt batch --help)");
        return *v;
    }
};

}  // namespace

int cmd_batch(const Argv& argv) {
    auto args_ptr = make_args();
    Args& args = *args_ptr;
    if (!args.parse(argv)) return 0;
    FOT_CHECK(args.positional().empty(), "fotrt batch: unexpected argument '",
              args.positional().front(), "' (see fotrt batch --help)");

    JobYaml yaml;
    RunConfig run;
    std::string yaml_path;
    if (args.has("config")) {
        yaml_path = args.get("config");
        std::ifstream in(yaml_path);
        FOT_CHECK(in, "fotrt batch: cannot read --config ", yaml_path);
        std::stringstream ss;
        ss << in.rdbuf();
        yaml = split_job_yaml(ss.str(), yaml_path, kJobKeys);
        run = resolve_run_config(args, yaml.run_yaml, yaml_path);
    } else {
        run = resolve_run_config(args);
    }
    const JobValues v{args, yaml, yaml_path};

    BatchOptions o;
    const std::string task = v.text("task", "score");
    FOT_CHECK(parse_batch_task(task, &o.task), "fotrt batch: task '", task,
              "' is unknown (expected score or generate)");
    o.corpus.path = v.required("input");
    o.output = v.required("output");
    o.corpus.offsets_path = v.text("offsets");
    if (std::string w = v.text("token-dtype"); !w.empty()) {
        FOT_CHECK(parse_token_width(w, &o.corpus.token_bytes), "fotrt batch: token dtype '", w,
                  "' is unknown (expected u16 or u32)");
    }
    o.restart = v.boolean("restart");
    o.summary_path = v.text("summary", o.output + ".summary.json");
    o.progress_interval_s = v.number("progress-interval", 30.0);
    FOT_CHECK(o.progress_interval_s >= 0, "fotrt batch: progress interval must be >= 0");
    o.max_new_tokens = v.integer("max-new-tokens", 64);
    FOT_CHECK(o.max_new_tokens >= 1, "fotrt batch: max new tokens must be >= 1, got ",
              o.max_new_tokens);
    o.sampling.temperature = v.number("temperature", 0.0);
    FOT_CHECK(o.sampling.temperature >= 0, "fotrt batch: temperature must be >= 0");
    o.sampling.top_p = v.number("top-p", 1.0);
    FOT_CHECK(o.sampling.top_p > 0 && o.sampling.top_p <= 1,
              "fotrt batch: top_p must be in (0, 1]");
    const int64_t seed = v.integer("seed", 0);
    FOT_CHECK(seed >= 0, "fotrt batch: seed must be >= 0");
    o.sampling.seed = static_cast<uint64_t>(seed);
    o.ignore_eos = v.boolean("ignore-eos");

    auto world = parallel::make_world_communicator();
    auto session = open_session(run, *world);
    BatchResult r = run_batch_job(*session, o);
    if (session->is_root()) std::cout << r.summary_json << std::endl;
    return r.exit_code;
}

}  // namespace fot::cli
