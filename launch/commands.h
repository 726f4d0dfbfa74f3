// The fotrt subcommands. Each takes the arguments after its name, returns the process exit
// code, and throws fot::Error for usage and input errors (main prints them as one line).
#pragma once

#include <string>
#include <vector>

namespace fot::cli {

using Argv = std::vector<std::string>;

int cmd_inspect(const Argv& args);
int cmd_convert(const Argv& args);
int cmd_logits(const Argv& args);
int cmd_generate(const Argv& args);
int cmd_score(const Argv& args);
int cmd_passkey(const Argv& args);
int cmd_batch(const Argv& args);

}  // namespace fot::cli
