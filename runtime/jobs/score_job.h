// Scoring: the negative log-likelihood of a document under the model, in one model call
// (prefix windows into memory, the tail in the local cache, exactly as `fotrt logits`).
//
// NLL of the predicted token at position p (1 <= p < n) is -log softmax(logits[p-1])[x[p]],
// natural log, accumulated in double. The log-softmax is vocabulary-parallel and window by
// window: each tp rank reduces its own vocabulary slice (row max, sum of exponentials), the
// maxima are all-reduced with MAX and the rescaled sums with SUM over the tp communicator,
// and the target logit comes from the rank that owns it; full-vocabulary logits are never
// gathered. Every rank of the group gets the same result (mp ranks hold identical logits).
//
// Per-distance buckets let users plot perplexity against context length (as the FoT paper
// does): bucket 0 is positions [0, 2k), then each bucket is 4x longer: [2k, 8k), [8k, 32k),
// [32k, 128k), ... (k = 1024), labelled "0-2k", "2k-8k", ...
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/jobs/session.h"

namespace fot {

struct DistanceBucket {
    int64_t begin = 0;  // first position (inclusive)
    int64_t end = 0;    // last position (exclusive)
    double nll_sum = 0.0;
    int64_t tokens = 0;
};

struct ScoreResult {
    int64_t tokens = 0;  // predicted tokens, n - 1
    double nll_sum = 0.0;
    double ppl = 0.0;                     // exp(nll_sum / tokens)
    std::vector<DistanceBucket> buckets;  // every bucket up to the last position, in order
    std::vector<double> token_nll;        // per position 1..n-1, when asked for (tests)
    double seconds = 0.0;
};

// Index of the distance bucket holding `position` (>= 0).
int64_t distance_bucket_index(int64_t position);
// [begin, end) of bucket `index`.
DistanceBucket distance_bucket(int64_t index);
// "0-2k", "2k-8k", "8k-32k", "32k-128k", "128k-512k", "512k-2m", ...
std::string distance_bucket_label(const DistanceBucket& b);

struct ScoreOptions {
    bool keep_token_nll = false;
    // Called between windows (after each window's logits are reduced) on every rank; the
    // batch runner uses it on rank 0 to serve other groups' requests.
    std::function<void()> between_windows;
};

// Collective over the session's group (tp x mp ranks); ids identical on every rank, n >= 2,
// ids in the vocabulary. Resets the session's sequence first (a new document).
ScoreResult score_document(Session& s, const std::vector<int32_t>& ids,
                           const ScoreOptions& opts = {});

// The corpus-level result of a scoring job: every token of every scored document counted
// once, so perplexity = exp(nll_sum / tokens) (not a mean of per-document perplexities).
struct CorpusScore {
    int64_t documents = 0;  // score records (error records are not counted)
    int64_t tokens = 0;
    double nll_sum = 0.0;
    std::vector<std::pair<std::string, DistanceBucket>> buckets;  // by label, in order
    double mean_nll() const;  // nll_sum / tokens; 0 without tokens
    double ppl() const;       // exp(mean_nll())
};

// Sums the score records of a JSONL output (score_record_json lines; lines with "error"
// are skipped). Throws naming the file and line on a line that is not such a record.
CorpusScore corpus_score_from_records(const std::string& jsonl_path);
// {"documents", "tokens", "nll_sum", "mean_nll", "ppl", "nll_by_distance": {"0-2k":
// {"tokens", "nll_sum", "mean_nll", "ppl"}, ...}} as one JSON object.
std::string corpus_score_json(const CorpusScore& c);
// "12 documents, 40211 tokens, mean NLL 2.3104, perplexity 10.08; by distance: 0-2k 10.3
// (24576 tokens), 2k-8k 9.9 (15635 tokens)".
std::string describe_corpus_score(const CorpusScore& c);

// The `fotrt score` record of a document: {"id", "index", "tokens", "nll_sum", "ppl",
// "nll_by_distance": {"0-2k": {"tokens", "nll_sum"}, ...}} as one JSON line (no newline).
std::string score_record_json(const std::string& id_json, int64_t index, const ScoreResult& r);

}  // namespace fot
