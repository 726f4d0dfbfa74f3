#include "runtime/jobs/score_job.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "runtime/core/status.h"
#include "runtime/core/timer.h"

namespace fot {

namespace {
constexpr int64_t kFirstBucket = 2048;
}  // namespace

int64_t distance_bucket_index(int64_t position) {
    FOT_ASSERT(position >= 0);
    int64_t index = 0;
    for (int64_t end = kFirstBucket; position >= end; end *= 4) ++index;
    return index;
}

DistanceBucket distance_bucket(int64_t index) {
    DistanceBucket b;
    b.end = kFirstBucket;
    for (int64_t i = 0; i < index; ++i) {
        b.begin = b.end;
        b.end *= 4;
    }
    return b;
}

namespace {
std::string count_label(int64_t v) {
    if (v == 0) return "0";
    if (v % (1024 * 1024) == 0) return std::to_string(v / (1024 * 1024)) + "m";
    if (v % 1024 == 0) return std::to_string(v / 1024) + "k";
    return std::to_string(v);
}
}  // namespace

std::string distance_bucket_label(const DistanceBucket& b) {
    return count_label(b.begin) + "-" + count_label(b.end);
}

ScoreResult score_document(Session& s, const std::vector<int32_t>& ids, const ScoreOptions& opts) {
    Timer timer;
    const int64_t n = static_cast<int64_t>(ids.size());
    FOT_CHECK(n >= 2, "scoring needs at least 2 tokens (got ", n, ")");
    LongLlama& m = *s.model;
    parallel::Communicator& tp = *s.comms.tp;
    const int64_t vbegin = m.vocab_begin(), vrows = m.vocab_rows();

    ScoreResult r;
    r.tokens = n - 1;
    const int64_t nb = distance_bucket_index(n - 1) + 1;
    for (int64_t i = 0; i < nb; ++i) r.buckets.push_back(distance_bucket(i));
    if (opts.keep_token_nll) r.token_nll.reserve(static_cast<size_t>(n - 1));

    // Per window only (max, sum-exp, target logit) per row leave the device; the rows of
    // full-vocabulary logits are never gathered.
    std::vector<float> parts, global_max, sums;
    std::vector<int32_t> targets;
    Buffer parts_dev;
    ForwardOptions fo;
    fo.logits = LogitsRows::kAll;
    fo.on_logits = [&](int64_t row0, TensorView local) {
        const int64_t rows = local.shape[0];
        FOT_ASSERT(local.shape[1] == vrows);
        targets.resize(static_cast<size_t>(rows));
        for (int64_t i = 0; i < rows; ++i) {
            targets[i] = row0 + i + 1 < n ? ids[row0 + i + 1] : -1;
        }
        if (parts_dev.empty() || parts_dev.numel() < 3 * rows) {
            parts_dev = s.backend->alloc(DType::kF32, {3 * rows});
        }
        TensorView pv = reshape(parts_dev.view(), {rows, 3});
        s.backend->logsoftmax_parts(pv, local, targets.data(), vbegin);
        parts.resize(static_cast<size_t>(3 * rows));
        s.backend->download(parts.data(), pv, parts.size() * sizeof(float));
        global_max.resize(rows);
        for (int64_t i = 0; i < rows; ++i) global_max[i] = parts[3 * i];
        tp.all_reduce_max(parallel::host_view(global_max.data(), rows));
        // [rows sums of exp(x - global max) | rows target logits (0 unless this rank owns it)]
        sums.assign(static_cast<size_t>(2 * rows), 0.0f);
        for (int64_t i = 0; i < rows; ++i) {
            sums[i] = parts[3 * i + 1] * std::exp(parts[3 * i] - global_max[i]);
            sums[rows + i] = parts[3 * i + 2];
        }
        tp.all_reduce_sum(parallel::host_view(sums.data(), 2 * rows));
        for (int64_t i = 0; i < rows; ++i) {
            const int64_t position = row0 + i + 1;
            if (position >= n) continue;
            const double nll = std::log(static_cast<double>(sums[i])) +
                               static_cast<double>(global_max[i]) -
                               static_cast<double>(sums[rows + i]);
            r.nll_sum += nll;
            DistanceBucket& b = r.buckets[distance_bucket_index(position)];
            b.nll_sum += nll;
            ++b.tokens;
            if (opts.keep_token_nll) r.token_nll.push_back(nll);
        }
        if (opts.between_windows) opts.between_windows();
    };
    s.seq->reset();
    m.forward(*s.seq, ids, fo);
    r.ppl = std::exp(r.nll_sum / static_cast<double>(r.tokens));
    r.seconds = timer.seconds();
    return r;
}

std::string score_record_json(const std::string& id_json, int64_t index, const ScoreResult& r) {
    nlohmann::ordered_json j;
    j["id"] = nlohmann::ordered_json::parse(id_json);
    j["index"] = index;
    j["tokens"] = r.tokens;
    j["nll_sum"] = r.nll_sum;
    j["ppl"] = r.ppl;
    nlohmann::ordered_json by = nlohmann::ordered_json::object();
    for (const auto& b : r.buckets) {
        nlohmann::ordered_json e;
        e["tokens"] = b.tokens;
        e["nll_sum"] = b.nll_sum;
        by[distance_bucket_label(b)] = std::move(e);
    }
    j["nll_by_distance"] = std::move(by);
    return j.dump();
}

double CorpusScore::mean_nll() const {
    return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0;
}

double CorpusScore::ppl() const {
    return std::exp(mean_nll());
}

CorpusScore corpus_score_from_records(const std::string& jsonl_path) {
    std::ifstream in(jsonl_path, std::ios::binary);
    FOT_CHECK(in, "cannot read the score records in ", jsonl_path);
    CorpusScore c;
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        FOT_CHECK(j.is_object(), jsonl_path, ":", n, ": not a JSON record");
        if (j.contains("error")) continue;
        try {
            c.tokens += j.at("tokens").get<int64_t>();
            c.nll_sum += j.at("nll_sum").get<double>();
            for (const auto& [label, b] : j.at("nll_by_distance").items()) {
                auto it = std::find_if(c.buckets.begin(), c.buckets.end(),
                                       [&](const auto& e) { return e.first == label; });
                if (it == c.buckets.end()) {
                    c.buckets.emplace_back(label, DistanceBucket{});
                    it = c.buckets.end() - 1;
                }
                it->second.tokens += b.at("tokens").get<int64_t>();
                it->second.nll_sum += b.at("nll_sum").get<double>();
            }
        } catch (const nlohmann::json::exception& e) {
            FOT_THROW(jsonl_path, ":", n, ": not a score record (", e.what(), ")");
        }
        ++c.documents;
    }
    FOT_CHECK(!in.bad(), "read error on ", jsonl_path);
    return c;
}

std::string corpus_score_json(const CorpusScore& c) {
    nlohmann::ordered_json j;
    j["documents"] = c.documents;
    j["tokens"] = c.tokens;
    j["nll_sum"] = c.nll_sum;
    j["mean_nll"] = c.mean_nll();
    j["ppl"] = c.ppl();
    nlohmann::ordered_json by = nlohmann::ordered_json::object();
    for (const auto& [label, b] : c.buckets) {
        const double mean = b.tokens > 0 ? b.nll_sum / static_cast<double>(b.tokens) : 0.0;
        by[label] = {{"tokens", b.tokens},
                     {"nll_sum", b.nll_sum},
                     {"mean_nll", mean},
                     {"ppl", std::exp(mean)}};
    }
    j["nll_by_distance"] = std::move(by);
    return j.dump();
}

std::string describe_corpus_score(const CorpusScore& c) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "mean NLL %.4f, perplexity %.4g", c.mean_nll(), c.ppl());
    std::string out =
        str(c.documents, " documents, ", c.tokens, " tokens, ", buf, "; by distance:");
    for (const auto& [label, b] : c.buckets) {
        const double mean = b.tokens > 0 ? b.nll_sum / static_cast<double>(b.tokens) : 0.0;
        std::snprintf(buf, sizeof(buf), " %s %.4g (%lld tokens)", label.c_str(), std::exp(mean),
                      static_cast<long long>(b.tokens));
        out += buf;
    }
    return out;
}

}  // namespace fot
