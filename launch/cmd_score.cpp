// fotrt score: per-document NLL and perplexity of a corpus (runtime/jobs/batch_job.h, task
// score, without a journal).
#include <iostream>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/job_options.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/batch_job.h"

namespace fot::cli {

namespace {

// The corpus options of `fotrt score` fill BatchOptions directly (its defaults are theirs).
const OptionTable<BatchOptions>& score_options() {
    static const OptionTable<BatchOptions> table = [] {
        OptionTable<BatchOptions> t;
        add_corpus_rows(t, "output records (overwritten; written by rank 0)", /*job=*/false);
        t.add(flag("summary", "FILE",
                   "also write the job summary JSON (with the corpus perplexity) to FILE")
                  .default_is("none"),
              FOT_FIELD(summary_path), text_value());
        return t;
    }();
    return table;
}

}  // namespace

Args score_args() {
    Args args(
        "fotrt score",
        "Scores every document of a corpus in one model call per document (prefix windows\n"
        "into memory, the tail in the local cache) and writes one JSON line per document:\n"
        "id, index, tokens (n - 1), nll_sum (natural log), ppl and nll_by_distance (NLL\n"
        "and token count per position bucket 0-2k, 2k-8k, 8k-32k, ...). Inputs: JSONL\n"
        "({\"id\":..,\"text\":..} or {\"id\":..,\"ids\":[..]}), a directory of .txt files, or\n"
        "a uint16/uint32 token .bin with an offsets file. Bad records become error\n"
        "records {\"id\",\"index\",\"error\"} and the exit code is 3. With dp > 1 (world >\n"
        "tp x mp) the groups share the documents; records come in completion order. For\n"
        "a resumable job use fotrt batch --task score. At the end it logs the corpus\n"
        "summary: tokens, mean NLL, perplexity exp(total NLL / total tokens) and the\n"
        "perplexity per distance bucket (also in --summary).",
        {"fotrt score --model models/long_llama_3b --input docs.jsonl --output scores.jsonl",
         "fotrt score --model M --input books/ --output scores.jsonl --mem-capacity 256k",
         "fotrt score --model M --input docs.jsonl --output s.jsonl --precision exact",
         "mpirun -np 4 fotrt score --model M --input tokens.bin --output s.jsonl --tp 2"});
    args.add(score_options());
    add_run_options(args);
    return args;
}

int cmd_score(const Argv& argv) {
    Args args = score_args();
    if (!args.parse(argv)) return 0;
    RunConfig run = resolve_run_config(args);

    BatchOptions o;
    args.apply(score_options(), o);
    o.task = BatchTask::kScore;
    o.label = "score";
    o.journal = false;

    auto world = parallel::make_world_communicator();
    auto session = open_session(run, *world);
    BatchResult r = run_batch_job(*session, o);
    if (session->is_root()) {
        FOT_LOG(kInfo) << "scored " << r.written - r.errors << " of " << r.documents
                       << " documents into " << o.output
                       << (r.errors ? ", " + std::to_string(r.errors) + " error records" : "");
    }
    return r.exit_code;
}

}  // namespace fot::cli
