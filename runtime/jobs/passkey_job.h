// The eval job (`fotrt eval`, `fotrt passkey`): runs the trials of a PasskeyPlan (any task of
// runtime/jobs/eval_tasks.h) (runtime/jobs/passkey.h) over the dp
// groups of a world (runtime/jobs/dispatch.h) and tabulates accuracy by length x depth.
//
// Rank 0 builds each prompt (tokenizer.model is required) just before handing it out; each
// group runs greedy generation of len(answer) tokens exactly as `fotrt generate` does. Before
// anything runs, rank 0 checks that the longest prompt fits the memory capacity.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/jobs/passkey.h"
#include "runtime/jobs/session.h"

namespace fot {

struct PasskeyTrialResult {
    PasskeyTrial trial;
    int64_t prompt_tokens = 0;
    std::vector<int32_t> answer_ids;
    std::vector<int32_t> output_ids;
    std::string expected;  // the answer text
    std::string answer;    // the decoded output
    bool correct = false;  // output_ids == answer_ids, or the decoded output (trimmed) == expected
};

struct PasskeyReport {
    PasskeyPlan plan;
    std::vector<std::string> depth_labels;
    std::vector<PasskeyTrialResult> results;  // rank 0: every trial, in plan order

    // The accuracy table: one row per length, one column per depth (bin), and "all".
    std::string table() const;
    // {"task", "accuracy", "cells": [{"length", "depth", "trials", "correct"}], "seed",
    //  "lengths", "depths", "table": [{"length", "cells": [...], ...}], "trials": [...]}.
    std::string json() const;
    // One trial as a JSON line (also what `--output` holds).
    static std::string trial_json(const PasskeyTrialResult& r);
};

// Collective over s.world_comm. `output` (rank 0; "" = none) receives one JSON line per trial
// as trials finish. The report is complete on rank 0 only.
PasskeyReport run_passkey_job(Session& s, const PasskeyPlan& plan, const std::string& output);

}  // namespace fot
