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

int cmd_logits(const Argv& argv) {
    Args args("fotrt logits",
              "Runs ONE model call over the whole input (prefix windows into memory, the tail in\n"
              "the local cache, exactly as the reference) and writes the logits of every\n"
              "position as raw little-endian float32, row-major [n, vocab].",
              {"fotrt logits --model models/long_llama_3b --ids doc.json --out doc.f32",
               "fotrt logits --model M --ids doc.json --out doc.f32 --precision exact   # fp32 on "
               "a bf16 checkpoint",
               "mpirun -np 4 fotrt logits --model M --ids doc.json --out doc.f32 --tp 2 --mp 2"});
    args.option("ids", "IDS.json", "input token ids: a flat JSON list, e.g. [1, 450, 4996]");
    args.option("out", "OUT.f32", "output file (written by rank 0; replaced atomically)");
    args.flag("stats",
              "print per-rank memory statistics (tokens, bytes, all-gather traffic, "
              "time in scoring/selection/merge) to stderr");
    add_run_options(args);
    if (!args.parse(argv)) return 0;
    RunConfig run = resolve_run_config(args);
    const std::string ids_path = args.require("ids");
    const std::string out_path = args.require("out");

    auto world = parallel::make_world_communicator();
    std::vector<int32_t> ids;
    if (world->rank() == 0) ids = read_ids_json(ids_path);
    broadcast_ids(*world, ids);
    auto session = open_session(run, *world);
    FOT_CHECK(session->world.dp() == 1,
              "fotrt logits runs one document: use --tp x --mp = ", world->size(),
              " ranks (got dp=", session->world.dp(), ")");
    LogitsJobResult r = run_logits_job(*session, ids, out_path);
    if (args.has("stats")) {
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
