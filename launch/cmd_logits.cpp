// fotrt logits: float32 [n, vocab] logits of one long-input forward.
#include <iostream>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/logits_job.h"
#include "runtime/jobs/stats.h"

namespace fot::cli {

namespace {

struct LogitsCommand {
    std::string ids, out;
    bool stats = false;
};

const OptionTable<LogitsCommand>& logits_options() {
    static const OptionTable<LogitsCommand> table = [] {
        OptionTable<LogitsCommand> t;
        t.add(flag("ids", "IDS.json", "input token ids: a flat JSON list, e.g. [1, 450, 4996]")
                  .must_be_given(),
              FOT_FIELD(ids), text_value());
        t.add(flag("out", "OUT.f32", "output file (written by rank 0; replaced atomically)")
                  .must_be_given(),
              FOT_FIELD(out), text_value());
        t.add(switch_flag("stats",
                          "print per-rank memory statistics (tokens, bytes, all-gather traffic, "
                          "time in scoring/selection/merge) to stderr"),
              FOT_FIELD(stats), boolean_value());
        return t;
    }();
    return table;
}

}  // namespace

Args logits_args() {
    Args args("fotrt logits",
              "Runs ONE model call over the whole input (prefix windows into memory, the tail in\n"
              "the local cache, exactly as the reference) and writes the logits of every\n"
              "position as raw little-endian float32, row-major [n, vocab].",
              {"fotrt logits --model models/long_llama_3b --ids doc.json --out doc.f32",
               "fotrt logits --model M --ids doc.json --out doc.f32 --precision exact   # fp32 on "
               "a bf16 checkpoint",
               "mpirun -np 4 fotrt logits --model M --ids doc.json --out doc.f32 --tp 2 --mp 2"});
    args.add(logits_options());
    add_run_options(args);
    return args;
}

int cmd_logits(const Argv& argv) {
    Args args = logits_args();
    if (!args.parse(argv)) return 0;
    RunConfig run = resolve_run_config(args);
    LogitsCommand cmd;
    args.apply(logits_options(), cmd);
    const std::string ids_path = cmd.ids;
    const std::string out_path = cmd.out;

    auto world = parallel::make_world_communicator();
    std::vector<int32_t> ids;
    if (world->rank() == 0) ids = read_ids_json(ids_path);
    broadcast_ids(*world, ids);
    auto session = open_session(run, *world);
    FOT_CHECK(session->world.dp() == 1,
              "fotrt logits runs one document: use --tp x --mp = ", world->size(),
              " ranks (got dp=", session->world.dp(), ")");
    LogitsJobResult r = run_logits_job(*session, ids, out_path);
    if (cmd.stats) {
        const auto stats = collect_rank_stats(*session);
        if (session->is_root()) std::cerr << format_rank_stats(stats);
    }
    if (session->is_root()) {
        FOT_LOG(kInfo) << "wrote " << r.tokens << " x " << r.vocab << " logits to " << out_path
                       << " in " << r.seconds << " s (" << r.tokens / r.seconds << " tokens/s)";
    }
    return 0;
}

}  // namespace fot::cli
