// BatchJob: the corpus runner behind `fotrt score` and `fotrt batch` (docs/jobs.md).
//
// Rank 0 indexes the corpus (runtime/jobs/corpus.h), skips the records a previous run
// journaled (runtime/jobs/journal.h), and hands the rest to the dp groups (dispatch.h): in
// input order with one group, longest first with several (so a long document starts early and
// does not finish last). Each group runs one document at a time with the task:
//  - score: runtime/jobs/score_job.h, one record per document;
//  - generate: the document is the prompt; the record holds the new tokens (and their text
//    when the input was text; ids beyond the tokenizer's vocabulary are listed in
//    "ids_without_text"). Sampling uses seed + document index, so a record does not depend on
//    which group ran it.
// Records stream to the output on rank 0 in completion order (input order with one group),
// one JSON line each, with "id" and "index" (0-based record number). A malformed record, a
// text the model cannot hold (token ids outside its vocabulary) or a document that would
// overflow the memory capacity becomes an error record {"id", "index", "error"}; the job goes
// on, and its exit code is kExitErrorRecords when any record of the output is an error record.
//
// Collective over the session's world. Rank 0 prints progress and returns the summary; for
// the score task the summary's "corpus" holds the corpus-level result (score_job.h,
// CorpusScore) of every record of the output, earlier runs' included, also logged on stderr.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/jobs/corpus.h"
#include "runtime/jobs/session.h"
#include "runtime/model/sampler.h"

namespace fot {

// Exit code of a job that wrote error records (usage and fatal errors exit with 1).
constexpr int kExitErrorRecords = 3;

enum class BatchTask { kScore, kGenerate };
// "score" | "generate"; false when unknown.
bool parse_batch_task(const std::string& s, BatchTask* out);
const char* batch_task_name(BatchTask t);

struct BatchOptions {
    BatchTask task = BatchTask::kScore;
    CorpusSpec corpus;    // vocab_size is set from the model
    std::string output;   // OUT.jsonl
    bool journal = true;  // resumable (OUT.jsonl.journal); false: a plain, fresh output
    bool restart = false;
    std::string summary_path;  // "" = no summary file
    double progress_interval_s = 30.0;
    std::string label = "batch";  // progress line prefix
    // generate
    int64_t max_new_tokens = 64;
    SamplingParams sampling;
    bool ignore_eos = false;
};

struct BatchResult {
    int64_t documents = 0;     // records in the corpus
    int64_t written = 0;       // records in the output (all runs)
    int64_t errors = 0;        // error records in the output (all runs)
    int exit_code = 0;         // 0, or kExitErrorRecords; identical on every rank
    std::string summary_json;  // rank 0 only
};

// Collective over s.world_comm. Throws fot::Error for job-level problems (unusable corpus or
// output, text input without tokenizer.model, a journal from another job).
BatchResult run_batch_job(Session& s, const BatchOptions& opts);

// Memory tokens per memory layer after generating `new_tokens` tokens (each fed alone but the
// last; a feed that would overflow the local context of W tokens first moves all `local`
// tokens into memory), starting from `need` memory and `local` cached tokens. O(1); saturates
// at INT64_MAX. Exposed for tests.
int64_t generation_memory_tokens(int64_t need, int64_t local, int64_t W, int64_t new_tokens);

// Memory the model would need for a document of `prompt` tokens followed by `new_tokens`
// generated ones (0 for scoring): "" when it fits the session's capacity, else the reason.
// Resets the session's sequence.
std::string capacity_problem(Session& s, int64_t prompt, int64_t new_tokens);

// {"id": ..., "index": ..., "error": "..."} as one line.
std::string error_record_json(const std::string& id_json, int64_t index, const std::string& why);

}  // namespace fot
