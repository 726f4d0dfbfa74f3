// Per-rank statistics of the sharded memory, gathered to every rank: memory tokens and bytes
// held by the rank, bytes all-gathered for memory attention (total and per step), and the
// time spent scoring, selecting (top-k) and merging. Printed by `--stats`, returned in the
// JSON of jobs.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "runtime/jobs/session.h"

namespace fot {

// Collective over the session's world communicator. Returns a JSON array with one object
// per rank (in rank order), identical on every rank.
nlohmann::json collect_rank_stats(Session& s);

// A human-readable table of collect_rank_stats() output, one line per rank.
std::string format_rank_stats(const nlohmann::json& stats);

}  // namespace fot
