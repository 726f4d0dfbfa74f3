// fotrt batch: the resumable corpus runner (runtime/jobs/batch_job.h); every option can also
// come from the --config JOB.yaml (config/run_config.h: parse_job_yaml).

#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/job_options.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/batch_job.h"

namespace fot::cli {

namespace {

// The job options: each row has its flag and its job-YAML key, so `fotrt batch --config
// JOB.yaml` takes every option the command line takes, with the same checks.
const OptionTable<BatchOptions>& batch_options() {
    static const OptionTable<BatchOptions> table = [] {
        OptionTable<BatchOptions> t;
        t.add(flag("task", "score|generate", "what to do with each document").in_yaml("task"),
              FOT_FIELD(task),
              choice<BatchTask>(
                  "score or generate",
                  [](const std::string& s, BatchTask* out) { return parse_batch_task(s, out); },
                  [](const BatchTask& b) { return std::string(batch_task_name(b)); }));
        add_corpus_rows(t, "output records (written by rank 0, resumable)", /*job=*/true);
        t.add(switch_flag("restart", "discard an existing output and journal and start over")
                  .in_yaml("restart"),
              FOT_FIELD(restart), boolean_value());
        t.add(flag("summary", "FILE", "where to write the summary JSON")
                  .in_yaml("summary")
                  .default_is("OUT.jsonl.summary.json"),
              FOT_FIELD(summary_path), text_value());
        add_generation_rows(
            t, [](auto& o) -> auto& { return o; }, 1, "tokens per document",
            "sampling seed (document i uses S + i)", /*job=*/true);
        return t;
    }();
    return table;
}

// --config names a job YAML here: run keys and job keys.
const OptionTable<ConfigFile>& job_config_file_option() {
    static const OptionTable<ConfigFile> table = [] {
        OptionTable<ConfigFile> t;
        t.add(flag("config", "JOB.yaml",
                   "run keys (see docs/configuration.md) and job keys (the options above with _); "
                   "flags given here override it"),
              FOT_FIELD(path), text_value());
        return t;
    }();
    return table;
}

// The job keys of the YAML over the defaults, each checked by its row; messages name the
// file, the line and the key ("job.yaml:2: max_new_tokens expects an integer, got 'lots'").
void apply_job_yaml(const JobYaml& yaml, const std::string& path, BatchOptions& o) {
    for (const auto& [key, value] : yaml.values) {
        const Option<BatchOptions>* row = batch_options().find_key(key);
        FOT_ASSERT(row != nullptr);  // parse_job_yaml() only takes the table's keys
        const std::string problem = row->set(value, o);
        FOT_CHECK(problem.empty(), path, ":", yaml.lines.at(key), ": ", key, " ", problem);
    }
}

}  // namespace

Args batch_args() {
    Args args(
        "fotrt batch",
        "The corpus runner: scores documents or generates after them (--task), streams one\n"
        "JSON line per document to --output and journals it (OUT.jsonl.journal), so that\n"
        "rerunning the same command after a kill finishes the job with every record written\n"
        "exactly once. dp groups (world / (tp x mp)) pull documents from rank 0, longest first.\n"
        "Malformed or over-capacity records become error records (exit code 3). Ends with a\n"
        "summary JSON on stdout and in --summary. Every option can also be set in the\n"
        "--config YAML (run keys as in RUN.yaml, job keys like task: score, max_new_tokens: 32;\n"
        "flags win). See docs/jobs.md.",
        {"fotrt batch --task score --model M --input docs.jsonl --output scores.jsonl",
         "fotrt batch --config job.yaml",
         "mpirun -np 8 fotrt batch --config job.yaml --tp 2 --mp 2",
         "fotrt batch --task generate --model M --input prompts.jsonl --output gen.jsonl "
         "--max-new-tokens 32"});
    args.add(batch_options());
    add_run_options(args, job_config_file_option());
    return args;
}

int cmd_batch(const Argv& argv) {
    Args args = batch_args();
    if (!args.parse(argv)) return 0;

    JobYaml yaml;
    RunConfig run;
    std::string yaml_path;
    if (args.has("config")) {
        yaml_path = args.get("config");
        std::ifstream in(yaml_path);
        FOT_CHECK(in, "fotrt batch: cannot read --config ", yaml_path);
        std::stringstream ss;
        ss << in.rdbuf();
        std::set<std::string> job_keys;
        for (const auto& row : batch_options().options()) {
            if (!row.key.empty()) job_keys.insert(row.key);
        }
        yaml = parse_job_yaml(ss.str(), yaml_path, job_keys).value();
        run = resolve_run_config(args, yaml.run, yaml_path);
    } else {
        run = resolve_run_config(args);
    }

    BatchOptions o;
    apply_job_yaml(yaml, yaml_path, o);
    args.apply(batch_options(), o);  // flags win; then --input and --output are required
    if (o.summary_path.empty()) o.summary_path = o.output + ".summary.json";

    auto world = parallel::make_world_communicator();
    auto session = open_session(run, *world);
    BatchResult r = run_batch_job(*session, o);
    if (session->is_root()) std::cout << r.summary_json << std::endl;
    return r.exit_code;
}

}  // namespace fot::cli
