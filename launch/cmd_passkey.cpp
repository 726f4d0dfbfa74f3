// fotrt eval: the long-context retrieval tasks (runtime/jobs/eval_tasks.h, passkey_job.h);
// fotrt passkey: the same command with the passkey task (the older name, kept as an alias).
#include <iostream>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/passkey_job.h"

namespace fot::cli {

namespace {

struct PasskeyCommand {
    PasskeyPlan plan;
    std::string output;
    bool json = false;
};

void add_plan_options(OptionTable<PasskeyCommand>& t) {
    t.add(flag("lengths", "LIST", "prompt lengths in tokens, e.g. 2k,8k,32k,128k").must_be_given(),
          FOT_FIELD(plan.lengths), list_of(count(1), "2k,8k,32k"));
    t.add(flag("trials", "N", "trials per length (random depths) or per length x depth"),
          FOT_FIELD(plan.trials), integer<int64_t>(1));
    t.add(flag("seed", "S", "seed of keys and depths"), FOT_FIELD(plan.seed), integer<uint64_t>());
    t.add(flag("depths", "LIST", "fixed key depths in [0, 1], e.g. 0,0.5,1")
              .default_is("random depths, tabulated in --depth-bins bins"),
          FOT_FIELD(plan.depths), list_of(real(0, 1), "0,0.5,1"));
    t.add(flag("depth-bins", "N", "table columns for random depths"), FOT_FIELD(plan.depth_bins),
          integer<int64_t>(1, 100));
    t.add(flag("output", "FILE.jsonl", "also write one JSON line per trial"), FOT_FIELD(output),
          text_value());
    t.add(switch_flag("json", "print the table as JSON (with every trial) instead of text"),
          FOT_FIELD(json), boolean_value());
}

const OptionTable<PasskeyCommand>& passkey_options() {
    static const OptionTable<PasskeyCommand> table = [] {
        OptionTable<PasskeyCommand> t;
        add_plan_options(t);
        return t;
    }();
    return table;
}

const OptionTable<PasskeyCommand>& eval_options() {
    static const OptionTable<PasskeyCommand> table = [] {
        OptionTable<PasskeyCommand> t;
        t.add(flag("task", "NAME",
                   "passkey, number (10-digit number), kv (key-value list) or dict "
                   "(dictionary lookup)"),
              FOT_FIELD(plan.task),
              choice<EvalTask>(
                  "passkey, number, kv or dict",
                  [](const std::string& s, EvalTask* out) {
                      if (s != "passkey" && s != "number" && s != "kv" && s != "dict") return false;
                      *out = parse_eval_task(s);
                      return true;
                  },
                  [](const EvalTask& e) { return std::string(eval_task_name(e)); }));
        add_plan_options(t);
        return t;
    }();
    return table;
}

int run_eval(const Args& args, const OptionTable<PasskeyCommand>& options) {
    RunConfig run = resolve_run_config(args);
    PasskeyCommand cmd;
    args.apply(options, cmd);
    const PasskeyPlan& plan = cmd.plan;

    auto world = parallel::make_world_communicator();
    auto session = open_session(run, *world);
    PasskeyReport report = run_passkey_job(*session, plan, cmd.output);
    if (session->is_root()) {
        if (cmd.json) {
            std::cout << report.json() << std::endl;
        } else {
            std::cout << report.table() << std::flush;
        }
    }
    return 0;
}

}  // namespace

Args passkey_args() {
    Args args("fotrt passkey",
              "Passkey retrieval as in the LongLLaMA / Landmark-Attention evaluation: filler text\n"
              "(\"The grass is green. The sky is blue. ...\") with \"The pass key is K. Remember\n"
              "it. K is the pass key.\" at a random depth, then \"What is the pass key? The pass\n"
              "key is\"; a trial is correct when greedy decoding reproduces K. Prompts are sized\n"
              "in tokens (tokenizer.model is required). Prints accuracy by length x depth.",
              {"fotrt passkey --model models/long_llama_3b --lengths 2k,8k,32k --trials 10",
               "fotrt passkey --model M --lengths 32k --depths 0,0.25,0.5,0.75,1 --trials 4 --json",
               "mpirun -np 8 fotrt passkey --model M --lengths 128k,256k --trials 20 --mp 4"});
    args.add(passkey_options());
    add_run_options(args);
    return args;
}

int cmd_passkey(const Argv& argv) {
    Args args = passkey_args();
    if (!args.parse(argv)) return 0;
    return run_eval(args, passkey_options());
}

Args eval_args() {
    Args args(
        "fotrt eval",
        "Long-context retrieval tasks generated here (no download), scored by exact match of\n"
        "the greedy answer: passkey (the LongLLaMA / Landmark prompt), number (a 10-digit\n"
        "number in the same filler, InfiniteBench style), kv (a list of random key-value\n"
        "pairs, ask one) and dict (dictionary lookup, FoT style). Prompts are sized in tokens\n"
        "of the model's tokenizer (tokenizer.model is required) with the needle at the\n"
        "requested depth; --seed fixes them. Prints accuracy by length x depth (--json: one\n"
        "object with task, accuracy and cells); progress goes to stderr on rank 0. Runs on\n"
        "any layout (--tp, --mp, dp) with dense or top-k retrieval.",
        {"fotrt make-demo-model --out demo && fotrt eval --model demo --task kv "
         "--lengths 4k,16k --trials 10",
         "fotrt eval --model M --task passkey --lengths 32k --depths 0,0.5,1 --json",
         "mpirun -np 2 fotrt eval --model demo --task passkey --lengths 4k,16k,64k --mp 2",
         "fotrt eval --model demo --task kv --lengths 16k --retrieval topk --k 32 "
         "--output trials.jsonl"});
    args.add(eval_options());
    add_run_options(args);
    return args;
}

int cmd_eval(const Argv& argv) {
    Args args = eval_args();
    if (!args.parse(argv)) return 0;
    return run_eval(args, eval_options());
}

}  // namespace fot::cli
