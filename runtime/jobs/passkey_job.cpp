#include "runtime/jobs/passkey_job.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/core/logging.h"
#include "runtime/core/progress.h"
#include "runtime/core/status.h"
#include "runtime/jobs/batch_job.h"
#include "runtime/jobs/dispatch.h"
#include "runtime/jobs/generate_job.h"
#include "runtime/jobs/journal.h"

namespace fot {

using ojson = nlohmann::ordered_json;

namespace {

// Payload of a trial: [answer count][answer ids][prompt ids], int32 each.
std::string encode_trial(const PasskeyPrompt& p) {
    std::vector<int32_t> v;
    v.reserve(1 + p.answer_ids.size() + p.ids.size());
    v.push_back(static_cast<int32_t>(p.answer_ids.size()));
    v.insert(v.end(), p.answer_ids.begin(), p.answer_ids.end());
    v.insert(v.end(), p.ids.begin(), p.ids.end());
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int32_t));
}

void decode_trial(const std::string& payload, std::vector<int32_t>& answer,
                  std::vector<int32_t>& prompt) {
    FOT_CHECK(payload.size() % 4 == 0 && payload.size() >= 4, "passkey: corrupt trial message");
    std::vector<int32_t> v(payload.size() / 4);
    std::memcpy(v.data(), payload.data(), payload.size());
    const size_t na = static_cast<size_t>(v[0]);
    FOT_CHECK(1 + na <= v.size(), "passkey: corrupt trial message");
    answer.assign(v.begin() + 1, v.begin() + 1 + static_cast<std::ptrdiff_t>(na));
    prompt.assign(v.begin() + 1 + static_cast<std::ptrdiff_t>(na), v.end());
}

std::string length_label(int64_t v) {
    if (v % (1024 * 1024) == 0) return std::to_string(v / (1024 * 1024)) + "m";
    if (v % 1024 == 0) return std::to_string(v / 1024) + "k";
    return std::to_string(v);
}

struct Cell {
    int64_t trials = 0, correct = 0;
    std::string text() const {
        if (trials == 0) return "-";
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%.0f%% (%lld/%lld)", 100.0 * correct / trials,
                      static_cast<long long>(correct), static_cast<long long>(trials));
        return buf;
    }
    ojson json() const {
        return {{"trials", trials},
                {"correct", correct},
                {"accuracy", trials ? static_cast<double>(correct) / trials : 0.0}};
    }
};

// cells[length][column], the last column being "all".
std::vector<std::vector<Cell>> tabulate(const PasskeyReport& r) {
    const size_t cols = r.depth_labels.size();
    std::vector<std::vector<Cell>> cells(r.plan.lengths.size(), std::vector<Cell>(cols + 1));
    for (const auto& t : r.results) {
        for (size_t c : {static_cast<size_t>(t.trial.depth_index), cols}) {
            Cell& cell = cells[static_cast<size_t>(t.trial.length_index)][c];
            ++cell.trials;
            cell.correct += t.correct ? 1 : 0;
        }
    }
    return cells;
}

}  // namespace

std::string PasskeyReport::trial_json(const PasskeyTrialResult& r) {
    ojson j;
    j["length"] = r.trial.length;
    j["trial"] = r.trial.trial;
    j["depth"] = r.trial.depth;
    j["key"] = r.trial.key;
    j["prompt_tokens"] = r.prompt_tokens;
    j["answer_ids"] = r.answer_ids;
    j["output_ids"] = r.output_ids;
    j["correct"] = r.correct;
    return j.dump();
}

std::string PasskeyReport::table() const {
    const auto cells = tabulate(*this);
    std::vector<std::string> header = {"length"};
    header.insert(header.end(), depth_labels.begin(), depth_labels.end());
    header.push_back("all");
    std::vector<std::vector<std::string>> rows = {header};
    for (size_t l = 0; l < plan.lengths.size(); ++l) {
        std::vector<std::string> row = {length_label(plan.lengths[l])};
        for (const Cell& c : cells[l]) row.push_back(c.text());
        rows.push_back(std::move(row));
    }
    std::vector<size_t> width(header.size(), 0);
    for (const auto& row : rows) {
        for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    }
    std::ostringstream os;
    os << "passkey retrieval accuracy (correct/trials) by prompt length x key depth; seed "
       << plan.seed << "\n";
    for (const auto& row : rows) {
        for (size_t c = 0; c < row.size(); ++c) {
            os << row[c];
            if (c + 1 < row.size()) os << std::string(width[c] - row[c].size() + 2, ' ');
        }
        os << "\n";
    }
    return os.str();
}

std::string PasskeyReport::json() const {
    const auto cells = tabulate(*this);
    ojson j;
    j["seed"] = plan.seed;
    j["lengths"] = plan.lengths;
    j["depths"] = depth_labels;
    j["depth_mode"] = plan.depths.empty() ? "random" : "fixed";
    ojson table = ojson::array();
    for (size_t l = 0; l < plan.lengths.size(); ++l) {
        ojson row;
        row["length"] = plan.lengths[l];
        ojson cs = ojson::array();
        for (size_t c = 0; c < depth_labels.size(); ++c) {
            ojson cell = cells[l][c].json();
            cell["depth"] = depth_labels[c];
            cs.push_back(std::move(cell));
        }
        row["cells"] = std::move(cs);
        row["all"] = cells[l].back().json();
        table.push_back(std::move(row));
    }
    j["table"] = std::move(table);
    ojson trials = ojson::array();
    for (const auto& r : results) trials.push_back(ojson::parse(trial_json(r)));
    j["trials"] = std::move(trials);
    return j.dump();
}

PasskeyReport run_passkey_job(Session& s, const PasskeyPlan& plan, const std::string& output) {
    PasskeyReport report;
    report.plan = plan;
    report.depth_labels = passkey_depth_labels(plan);
    const std::vector<PasskeyTrial> trials = plan_passkey_trials(plan);
    const bool root = s.is_root();

    std::vector<size_t> order(trials.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::unique_ptr<RecordLog> log;
    std::vector<PasskeyTrialResult> results(trials.size());
    if (root) {
        Tokenizer& tok = s.get_tokenizer();
        // The longest prompt must fit the memory, with a margin for the sizing tolerance.
        const int64_t longest = *std::max_element(plan.lengths.begin(), plan.lengths.end());
        const int64_t answer = static_cast<int64_t>(tok.encode("50000", false).size());
        if (std::string why = capacity_problem(s, longest + longest / 100 + 1, answer);
            !why.empty()) {
            FOT_THROW("passkey prompt of ", longest, " tokens ", why);
        }
        if (s.world.dp() > 1) {
            std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
                return trials[a].length > trials[b].length;
            });
        }
        if (!output.empty()) {
            RecordLogOptions lo;
            lo.journal = false;
            log = std::make_unique<RecordLog>(output, lo);
        }
    }

    ProgressLine progress("passkey", "trials", static_cast<int64_t>(trials.size()),
                          root && !s.run.quiet);
    int64_t trials_done = 0;
    size_t next_pos = 0;
    DispatchHooks hooks;
    hooks.next = [&]() -> std::optional<WorkItem> {
        if (next_pos >= order.size()) return std::nullopt;
        const size_t i = order[next_pos++];
        const PasskeyTrial& t = trials[i];
        PasskeyPrompt p = make_passkey_prompt(s.get_tokenizer(), t.length, t.depth, t.key);
        return WorkItem{static_cast<int64_t>(i), encode_trial(p)};
    };
    hooks.run = [&](const WorkItem& item, const std::function<void()>& poll) {
        std::vector<int32_t> answer, prompt;
        decode_trial(item.payload, answer, prompt);
        GenerateOptions go;
        go.max_new_tokens = static_cast<int64_t>(answer.size());
        go.between_windows = poll;  // heartbeats through a long prompt's windows too
        GenerateResult g = run_generate_job(s, prompt, go);
        PasskeyTrialResult r;
        r.trial = trials[static_cast<size_t>(item.index)];
        r.prompt_tokens = static_cast<int64_t>(prompt.size());
        r.answer_ids = std::move(answer);
        r.output_ids = std::move(g.new_tokens);
        r.correct = r.output_ids == r.answer_ids;
        WorkResult w;
        w.index = item.index;
        w.ok = true;
        w.tokens = r.prompt_tokens + static_cast<int64_t>(r.output_ids.size());
        w.record = PasskeyReport::trial_json(r);
        return w;
    };
    hooks.done = [&](WorkResult w, int) {
        const ojson j = ojson::parse(w.record);
        PasskeyTrialResult& r = results[static_cast<size_t>(w.index)];
        r.trial = trials[static_cast<size_t>(w.index)];
        r.prompt_tokens = j["prompt_tokens"].get<int64_t>();
        r.answer_ids = j["answer_ids"].get<std::vector<int32_t>>();
        r.output_ids = j["output_ids"].get<std::vector<int32_t>>();
        r.correct = j["correct"].get<bool>();
        if (log) log->append(w.index, true, w.record);
        progress.update(++trials_done);
        FOT_LOG(kDebug) << "passkey trial " << w.index << ": length " << r.trial.length
                        << ", depth " << r.trial.depth << ", " << (r.correct ? "correct" : "wrong");
    };
    run_dispatch(s.world, *s.world_comm, hooks);
    progress.finish();
    if (root) report.results = std::move(results);
    return report;
}

}  // namespace fot
