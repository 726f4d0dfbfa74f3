// The scaling sweep of `fotrt bench --sweep` (docs/scaling.md): every point of a SweepConfig
// grid that fits the world is run on a random-weights model of the sweep's shape, timed per
// phase on every rank (phase_timer.h), and written by rank 0 into the output folder:
//   points.csv      one row per measured point (columns: docs/scaling.md §2)
//   points.jsonl    the same points with every rank's phases, and one record per skipped point
//   machine.json    the machine and run description
//   model.json      (with predict) the calibration of the performance model (perf_model.h)
// Rank 0 prints one progress line per point with the ETA, and each skipped layout with its
// reason. With `predict`, a calibration step runs first (per backend x precision: every
// retrieval mode on tp = mp = 1, dp = world, plus an all-gather and barrier probe), and each
// point's prediction is printed beside its measurement with the error.
#pragma once

#include <string>

#include "config/sweep_config.h"
#include "parallel/communicator.h"

namespace fot {

struct SweepOptions {
    std::string output;    // folder (created)
    bool predict = false;  // calibrate, predict, print measured vs predicted
};

struct SweepSummary {
    int measured = 0, skipped = 0;
    // Largest |predicted / measured - 1| over phases longer than 10 ms (predict only; -1 when
    // no phase qualified).
    double max_error_over_10ms = -1;
};

// Collective over `world` (every rank calls it with the same config).
SweepSummary run_sweep(const SweepConfig& cfg, parallel::Communicator& world,
                       const SweepOptions& opts);

// Prints the performance model's projection of every point of `cfg` on the named hardware
// (perf_model.h presets), whatever the world size: no model runs. Rank-local.
std::string project_sweep(const SweepConfig& cfg, const std::string& hardware);

}  // namespace fot
