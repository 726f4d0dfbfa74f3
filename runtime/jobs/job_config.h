// Job YAML: a run YAML (config/run_config.h) plus the options of a job at the top level,
// so that `fotrt batch --config JOB.yaml` needs nothing else on the command line:
//
//   model: models/long_llama_3b      # run keys, as in RUN.yaml
//   parallel: { tp: 2, mp: 2 }
//   task: score                      # job keys: plain values, named like the flags with _
//   input: corpus.jsonl
//   output: scores.jsonl
//
// split_job_yaml() takes the job keys out (each must be a plain scalar on its own line, not a
// list or a nested block) and returns the rest, with those lines blanked so that line numbers
// in run-config errors stay right. A job key given twice is an error naming both lines.
#pragma once

#include <map>
#include <set>
#include <string>

namespace fot {

struct JobYaml {
    std::map<std::string, std::string> values;  // job key -> value (unquoted)
    std::map<std::string, int> lines;           // job key -> 1-based line
    std::string run_yaml;                       // everything else
};

// Throws fot::Error "JOB.yaml:LINE: ..." for a job key that is not a plain scalar.
JobYaml split_job_yaml(const std::string& text, const std::string& origin,
                       const std::set<std::string>& job_keys);

}  // namespace fot
