// The run options shared by every model-running subcommand (logits, generate, score, passkey,
// batch): the rows of run_options() (config/run_config.h) plus --config, and one rule for
// combining them with a run YAML.
//
// Precedence: defaults < the YAML given with --config < each flag given on the command line.
// resolve_run_config() validates the result and checks that the model directory exists and
// holds a config.json; every error is a fot::Error naming the flag, the YAML key or the path.
#pragma once

#include "config/run_config.h"
#include "launch/args.h"

namespace fot::cli {

// The --config row: the YAML file that run keys (and, for fotrt batch, job keys) come from.
struct ConfigFile {
    std::string path;
};
// --config RUN.yaml, as the run commands take it.
const OptionTable<ConfigFile>& run_config_file_option();

// Declares `config_file` (--config) and every row of run_options().
void add_run_options(Args& args,
                     const OptionTable<ConfigFile>& config_file = run_config_file_option());

// Builds the RunConfig from parsed `args` (which must have had add_run_options()). Throws
// fot::Error on any invalid value or a missing/unusable model directory.
RunConfig resolve_run_config(const Args& args);

// The same over a config already read from the --config file `origin` (instead of reading
// it): for commands whose YAML carries more than the run keys (fotrt batch's job YAML).
RunConfig resolve_run_config(const Args& args, const RunConfig& from_yaml,
                             const std::string& origin);

}  // namespace fot::cli
