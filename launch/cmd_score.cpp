// fotrt score: per-document NLL and perplexity of a corpus (runtime/jobs/batch_job.h, task
// score, without a journal).
#include <iostream>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/batch_job.h"

namespace fot::cli {

int cmd_score(const Argv& argv) {
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
        "a resumable job use fotrt batch --task score.",
        {"fotrt score --model models/long_llama_3b --input docs.jsonl --output scores.jsonl",
         "fotrt score --model M --input books/ --output scores.jsonl --mem-capacity 256k",
         "fotrt score --model M --input docs.jsonl --output s.jsonl --precision exact",
         "mpirun -np 4 fotrt score --model M --input tokens.bin --output s.jsonl --tp 2"});
    args.option("input", "CORPUS", "JSONL file, directory of .txt files, or a token .bin");
    args.option("output", "OUT.jsonl", "output records (overwritten; written by rank 0)");
    args.option("offsets", "FILE", "offsets of a token .bin: n + 1 little-endian uint64",
                "the .bin path with .offsets");
    args.option("token-dtype", "u16|u32", "id width of a token .bin", "from the file sizes");
    args.option("progress-interval", "SECONDS",
                "seconds between progress lines when stderr is not a terminal; 0 = none", "30");
    add_run_options(args);
    if (!args.parse(argv)) return 0;
    FOT_CHECK(args.positional().empty(), "fotrt score: unexpected argument '",
              args.positional().front(), "' (see fotrt score --help)");
    RunConfig run = resolve_run_config(args);

    BatchOptions o;
    o.task = BatchTask::kScore;
    o.label = "score";
    o.journal = false;
    o.corpus.path = args.require("input");
    o.output = args.require("output");
    o.corpus.offsets_path = args.get("offsets");
    if (args.has("token-dtype")) {
        FOT_CHECK(parse_token_width(args.get("token-dtype"), &o.corpus.token_bytes),
                  "fotrt score: --token-dtype '", args.get("token-dtype"),
                  "' is unknown (expected u16 or u32)");
    }
    o.progress_interval_s = args.get_double("progress-interval", 30.0);
    FOT_CHECK(o.progress_interval_s >= 0, "fotrt score: --progress-interval must be >= 0");

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
