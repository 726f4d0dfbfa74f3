// fotrt passkey: the passkey retrieval evaluation (runtime/jobs/passkey.h, passkey_job.h).
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/passkey_job.h"

namespace fot::cli {

namespace {

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(item);
    return out;
}

}  // namespace

int cmd_passkey(const Argv& argv) {
    Args args("fotrt passkey",
              "Passkey retrieval as in the LongLLaMA / Landmark-Attention evaluation: filler text\n"
              "(\"The grass is green. The sky is blue. ...\") with \"The pass key is K. Remember\n"
              "it. K is the pass key.\" at a random depth, then \"What is the pass key? The pass\n"
              "key is\"; a trial is correct when greedy decoding reproduces K. Prompts are sized\n"
              "in tokens (tokenizer.model is required). Prints accuracy by length x depth.",
              {"fotrt passkey --model models/long_llama_3b --lengths 2k,8k,32k --trials 10",
               "fotrt passkey --model M --lengths 32k --depths 0,0.25,0.5,0.75,1 --trials 4 --json",
               "mpirun -np 8 fotrt passkey --model M --lengths 128k,256k --trials 20 --mp 4"});
    args.option("lengths", "LIST", "prompt lengths in tokens, e.g. 2k,8k,32k,128k");
    args.option("trials", "N", "trials per length (random depths) or per length x depth", "5");
    args.option("seed", "S", "seed of keys and depths", "0");
    args.option("depths", "LIST", "fixed key depths in [0, 1], e.g. 0,0.5,1",
                "random depths, tabulated in --depth-bins bins");
    args.option("depth-bins", "N", "table columns for random depths", "5");
    args.option("output", "FILE.jsonl", "also write one JSON line per trial");
    args.flag("json", "print the table as JSON (with every trial) instead of text");
    add_run_options(args);
    if (!args.parse(argv)) return 0;
    FOT_CHECK(args.positional().empty(), "fotrt passkey: unexpected argument '",
              args.positional().front(), "' (see fotrt passkey --help)");
    RunConfig run = resolve_run_config(args);

    PasskeyPlan plan;
    for (const auto& item : split_list(args.require("lengths"))) {
        plan.lengths.push_back(parse_count(item, "fotrt passkey: --lengths"));
    }
    FOT_CHECK(!plan.lengths.empty(), "fotrt passkey: --lengths is empty");
    plan.trials = args.get_int("trials", 5);
    FOT_CHECK(plan.trials >= 1, "fotrt passkey: --trials must be >= 1, got ", plan.trials);
    const int64_t seed = args.get_int("seed", 0);
    FOT_CHECK(seed >= 0, "fotrt passkey: --seed must be >= 0");
    plan.seed = static_cast<uint64_t>(seed);
    if (args.has("depths")) {
        for (const auto& item : split_list(args.get("depths"))) {
            char* end = nullptr;
            const double d = std::strtod(item.c_str(), &end);
            FOT_CHECK(!item.empty() && *end == '\0' && d >= 0.0 && d <= 1.0,
                      "fotrt passkey: --depths expects numbers in [0, 1], got '", item, "'");
            plan.depths.push_back(d);
        }
        FOT_CHECK(!plan.depths.empty(), "fotrt passkey: --depths is empty");
    }
    plan.depth_bins = args.get_int("depth-bins", 5);
    FOT_CHECK(plan.depth_bins >= 1 && plan.depth_bins <= 100,
              "fotrt passkey: --depth-bins must be in [1, 100], got ", plan.depth_bins);

    auto world = parallel::make_world_communicator();
    auto session = open_session(run, *world);
    PasskeyReport report = run_passkey_job(*session, plan, args.get("output"));
    if (session->is_root()) {
        if (args.has("json")) {
            std::cout << report.json() << std::endl;
        } else {
            std::cout << report.table() << std::flush;
        }
    }
    return 0;
}

}  // namespace fot::cli
