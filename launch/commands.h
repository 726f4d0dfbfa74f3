// The fotrt subcommands. Each takes the arguments after its name, returns the process exit
// code, and throws fot::Error for usage and input errors (main prints them as one line).
#pragma once

#include <string>
#include <vector>

#include "launch/args.h"

namespace fot::cli {

using Argv = std::vector<std::string>;

// A subcommand: `args()` builds its parser with every option declared (its own table and,
// for the model-running ones, the run options) and nothing parsed; `run` parses with it.
// The CLI tests walk this list, so a new command is covered by them once it is listed.
struct CommandInfo {
    const char* name;     // "logits"
    const char* summary;  // one line for `fotrt --help`
    Args (*args)();
    int (*run)(const Argv& args);
};

// Every subcommand, in the order `fotrt --help` lists them.
const std::vector<CommandInfo>& commands();

Args inspect_args();
Args convert_args();
Args logits_args();
Args generate_args();
Args score_args();
Args passkey_args();
Args batch_args();
Args serve_args();
Args tokenize_args();
Args detokenize_args();

int cmd_inspect(const Argv& args);
int cmd_convert(const Argv& args);
int cmd_logits(const Argv& args);
int cmd_generate(const Argv& args);
int cmd_score(const Argv& args);
int cmd_passkey(const Argv& args);
int cmd_batch(const Argv& args);
int cmd_serve(const Argv& args);
int cmd_tokenize(const Argv& args);
int cmd_detokenize(const Argv& args);

}  // namespace fot::cli
