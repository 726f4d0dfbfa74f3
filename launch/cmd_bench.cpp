// fotrt bench: scaling sweeps on random-weights models, per-phase timing and the performance
// model (runtime/jobs/sweep_job.h, docs/scaling.md).
#include <cstdio>

#include "launch/args.h"
#include "launch/commands.h"
#include "parallel/mpi_session.h"
#include "runtime/jobs/perf_model.h"
#include "runtime/jobs/sweep_job.h"

namespace fot::cli {

namespace {

struct BenchArgs {
    std::string sweep, output, hardware;
    bool predict = false;
    int64_t repeats = 0;
};

const OptionTable<BenchArgs>& bench_options() {
    static const OptionTable<BenchArgs> table = [] {
        OptionTable<BenchArgs> t;
        t.add(flag("sweep", "SWEEP.yaml", "the grid to run (config/examples/sweep-*.yaml)")
                  .must_be_given(),
              FOT_FIELD(sweep), text_value());
        t.add(flag("output", "DIR",
                   "folder for points.csv, points.jsonl, machine.json, model.json (created; "
                   "written by rank 0); required unless --hardware"),
              FOT_FIELD(output), text_value());
        t.add(switch_flag("predict",
                          "calibrate the performance model first, then print each point's "
                          "prediction beside the measurement with the error"),
              FOT_FIELD(predict), boolean_value());
        std::vector<std::string> names;
        for (const Hardware& h : hardware_presets()) names.push_back(h.name);
        t.add(flag("hardware", "NAME",
                   "print the model's projection of the sweep on this machine instead of "
                   "running it (no model runs; any world size)"),
              FOT_FIELD(hardware), string_choice(names));
        t.add(flag("repeats", "N", "timed calls per point (0 = the sweep's `repeats`)"),
              FOT_FIELD(repeats), integer<int64_t>(0, 1000));
        return t;
    }();
    return table;
}

}  // namespace

Args bench_args() {
    Args args(
        "fotrt bench",
        "Runs a scaling sweep (SWEEP.yaml: model shape, memory sizes, query sizes, tp x mp x\n"
        "dp layouts, dense/top-k retrieval, backends, precisions) on random weights of the\n"
        "shape (tiny, 3b, 7b or a model folder's config.json; nothing is downloaded), all\n"
        "under one mpirun. Layouts whose tp x mp x dp is not the world size are skipped with\n"
        "the reason. Each point: the median (`statistic: min`: the fastest) of `repeats`\n"
        "calls, over `rounds` passes of the grid, of Q tokens over a memory of M tokens,\n"
        "timed per phase on every rank (gemm, local_attn, mem_score, topk_select,\n"
        "merge, other, tp_allreduce, mp_allgather, wait), FLOP/s, bytes/s, bytes sent and\n"
        "peak memory per rank, written as CSV and JSON lines (docs/scaling.md). Plots:\n"
        "scripts/plot_scaling.py DIR.",
        {"mpirun -np 4 fotrt bench --sweep config/examples/sweep-ci.yaml --output runs/ci",
         "mpirun -np 4 fotrt bench --sweep config/examples/sweep-ci.yaml --output runs/ci "
         "--predict",
         "fotrt bench --sweep config/examples/sweep-3b-projection.yaml --hardware "
         "h200-nvlink-ib",
         "scripts/plot_scaling.py runs/ci"});
    args.add(bench_options());
    return args;
}

int cmd_bench(const Argv& argv) {
    Args args = bench_args();
    if (!args.parse(argv)) return 0;
    BenchArgs b;
    args.apply(bench_options(), b);
    SweepConfig cfg = load_sweep_config(b.sweep).value();
    if (b.repeats > 0) cfg.repeats = static_cast<int>(b.repeats);
    if (!b.hardware.empty()) {
        std::fputs(project_sweep(cfg, b.hardware).c_str(), stdout);
        return 0;
    }
    FOT_CHECK(!b.output.empty(),
              "fotrt bench: --output DIR is required to run a sweep (see fotrt bench --help)");
    auto world = parallel::make_world_communicator();
    SweepOptions o;
    o.output = b.output;
    o.predict = b.predict;
    const SweepSummary s = run_sweep(cfg, *world, o);
    return s.measured > 0 ? 0 : 2;
}

}  // namespace fot::cli
