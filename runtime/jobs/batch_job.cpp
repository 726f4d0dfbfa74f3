#include "runtime/jobs/batch_job.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "runtime/core/logging.h"
#include "runtime/core/status.h"
#include "runtime/core/temp_files.h"
#include "runtime/core/timer.h"
#include "runtime/io/quote.h"
#include "runtime/jobs/dispatch.h"
#include "runtime/jobs/generate_job.h"
#include "runtime/jobs/journal.h"
#include "runtime/jobs/progress.h"
#include "runtime/jobs/score_job.h"

namespace fot {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

bool parse_batch_task(const std::string& s, BatchTask* out) {
    if (s == "score") {
        *out = BatchTask::kScore;
    } else if (s == "generate") {
        *out = BatchTask::kGenerate;
    } else {
        return false;
    }
    return true;
}

const char* batch_task_name(BatchTask t) {
    return t == BatchTask::kScore ? "score" : "generate";
}

namespace {
// What a corpus job can do without tokenizer.model (the hint of the missing-tokenizer error).
const char* const kWithoutTokenizer =
    "give token ids instead: JSONL records {\"id\": ..., \"ids\": [...]} or a token .bin";

// Records, the summary and the journal fingerprint hold text from the input (paths, file
// names, generated text that may end inside a multi-byte character): ill-formed UTF-8 is
// written as U+FFFD instead of making the JSON writer throw and end the job.
std::string dump_line(const ojson& j) {
    return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}
}  // namespace

std::string error_record_json(const std::string& id_json, int64_t index, const std::string& why) {
    ojson j;
    j["id"] = ojson::parse(id_json);
    j["index"] = index;
    j["error"] = escape_invalid_utf8(why);  // keeps the offending bytes visible
    return dump_line(j);
}

int64_t generation_memory_tokens(int64_t need, int64_t local, int64_t W, int64_t new_tokens) {
    // Closed form of: for each of the new_tokens - 1 fed tokens { if (local + 1 > W) {
    // need += local; local = 0; } ++local; } -- in O(1), since new_tokens comes from the user
    // (--max-new-tokens 9e18 must not loop). Saturates at INT64_MAX.
    auto add = [](int64_t a, int64_t b) {
        int64_t r;
        return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
    };
    int64_t steps = new_tokens - 1;
    if (steps <= 0 || W <= 0) return need;
    if (local >= W) {  // the first fed token flushes the whole local cache
        need = add(need, local);
        local = 1;
        --steps;
    }
    if (steps <= W - local) return need;  // fits without another flush
    steps -= W - local;                   // local is now W; each later flush moves W tokens
    const int64_t flushes = (steps - 1) / W + 1;
    const int64_t moved = flushes > INT64_MAX / W ? INT64_MAX : flushes * W;
    return add(need, moved);
}

std::string capacity_problem(Session& s, int64_t prompt, int64_t new_tokens) {
    Sequence& seq = *s.seq;
    const int64_t cap = seq.memory_capacity_tokens();
    if (cap <= 0 || s.model_config.mem_layers.empty()) return "";
    seq.reset();
    int64_t need = seq.memory_growth_for(prompt);
    // Generation feeds the new tokens one call each (the last one is never fed); a call that
    // would overflow the local cache (W) flushes all of it into memory first.
    const int64_t W = s.model_config.max_position_embeddings;
    need = generation_memory_tokens(need, prompt - need, W, new_tokens);
    const int64_t mp = s.world.mp();
    if (need <= cap * mp) return "";
    return str("does not fit in memory: it needs ", need,
               " memory tokens per memory layer but the capacity is ", cap, " tokens per rank x ",
               mp, " memory-parallel rank(s) = ", cap * mp,
               " (raise --mem-capacity or run with a larger --mp)");
}

namespace {

// The options that decide the records, for the journal header: resuming with other values
// would mix results of two different jobs.
std::string fingerprint(const Session& s, const BatchOptions& o, const Corpus& corpus) {
    ojson j;
    j["task"] = batch_task_name(o.task);
    j["corpus"] = corpus.describe();
    j["model"] = fs::absolute(s.run.model).lexically_normal().string();
    j["dtype"] = dtype_name(s.run.dtype);
    j["precision"] = precision_name(s.model->options().precision);
    j["retrieval"] = retrieval_name(s.run.memory.retrieval);
    j["k"] = s.run.memory.retrieval == Retrieval::kTopK ? s.run.memory.k : 0;
    j["mem_dtype"] = dtype_name(s.model->options().mem_dtype);
    j["last_context_length"] = s.model->options().last_context_length;
    j["mem_capacity_tokens"] = s.model->options().mem_capacity_tokens;
    if (o.task == BatchTask::kGenerate) {
        j["max_new_tokens"] = o.max_new_tokens;
        j["temperature"] = o.sampling.temperature;
        j["top_p"] = o.sampling.top_p;
        j["seed"] = o.sampling.seed;
        j["ignore_eos"] = o.ignore_eos;
    }
    return dump_line(j);
}

// Refuses, before anything is opened for writing, an output that is one of the job's inputs
// (a corpus file, a file of the model directory), by name or through a symbolic or hard link
// (same device and inode): writing it would truncate the input while it is mapped (SIGBUS)
// or replace it (--restart, the summary's rename).
void refuse_outputs_over_inputs(const Session& s, const BatchOptions& o, const Corpus& corpus) {
    struct Input {
        std::string path;
        const char* what;
        dev_t dev;
        ino_t ino;
    };
    std::vector<Input> inputs;
    auto add = [&](const std::string& path, const char* what) {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0) inputs.push_back({path, what, st.st_dev, st.st_ino});
    };
    for (const std::string& f : corpus.files()) add(f, "the input corpus");
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(s.run.model, ec)) {
        if (e.is_regular_file(ec)) add(e.path().string(), "a file of the model");
    }
    struct Output {
        std::string path;
        const char* role;
        const char* flag;
    };
    std::vector<Output> outputs;
    for (const std::string& f : record_log_files(o.output, o.journal)) {
        outputs.push_back({f, f == o.output ? "output" : "output file", "--output"});
    }
    if (!o.summary_path.empty()) {
        outputs.push_back({o.summary_path, "summary", "--summary"});
        outputs.push_back({o.summary_path + ".partial", "summary file", "--summary"});
    }
    for (const Output& out : outputs) {
        struct stat st {};
        if (::stat(out.path.c_str(), &st) != 0) continue;  // does not exist: cannot be an input
        for (const Input& in : inputs) {
            FOT_CHECK(st.st_dev != in.dev || st.st_ino != in.ino, out.role, " ", out.path,
                      out.path == in.path ? " is " : " is the same file as ", in.what, " ", in.path,
                      ": writing it would destroy that input; choose another ", out.flag);
        }
    }
    // A new .txt file in a text-directory corpus would become one of its documents.
    if (fs::is_directory(o.corpus.path, ec)) {
        const fs::path dir = fs::weakly_canonical(o.corpus.path, ec);
        for (const Output& out : outputs) {
            const fs::path p = fs::weakly_canonical(fs::absolute(out.path, ec), ec);
            FOT_CHECK(p.extension() != ".txt" || p.parent_path() != dir, out.role, " ", out.path,
                      " is a .txt file in the input directory ", o.corpus.path,
                      ": it would become one of its documents; choose another ", out.flag);
        }
    }
}

// Runs one document on every rank of a group (see the header for the records).
WorkResult run_document(Session& s, const BatchOptions& o, const WorkItem& item,
                        const std::function<void()>& poll) {
    Document d = deserialize_document(item.payload);
    WorkResult r;
    r.index = d.index;
    auto fail = [&](const std::string& why) {
        r.ok = false;
        r.record = error_record_json(d.id_json, d.index, why);
        return r;
    };
    if (!d.error.empty()) return fail(d.error);
    std::vector<int32_t> ids =
        d.has_text ? s.get_tokenizer(kWithoutTokenizer).encode(d.text, /*add_bos=*/true)
                   : std::move(d.ids);
    poll();  // tokenizing a book takes a while: a heartbeat before the first window
    const int64_t V = s.model_config.vocab_size;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= V) {
            return fail(str("token id ", ids[i], " at position ", i,
                            " is out of the model's vocabulary [0, ", V, ")",
                            d.has_text ? " (tokenizer.model does not match the model)" : ""));
        }
    }
    const int64_t n = static_cast<int64_t>(ids.size());
    if (o.task == BatchTask::kScore && n < 2) {
        return fail(str("scoring needs at least 2 tokens, the document has ", n));
    }
    if (n < 1) return fail("empty document");
    const int64_t new_tokens = o.task == BatchTask::kGenerate ? o.max_new_tokens : 0;
    if (std::string why = capacity_problem(s, n, new_tokens); !why.empty()) {
        return fail(str("document of ", n, " tokens ", why));
    }

    if (o.task == BatchTask::kScore) {
        ScoreOptions so;
        so.between_windows = poll;
        ScoreResult sr = score_document(s, ids, so);
        r.tokens = n;
        r.record = score_record_json(d.id_json, d.index, sr);
        return r;
    }
    GenerateOptions go;
    go.max_new_tokens = o.max_new_tokens;
    go.sampling = o.sampling;
    go.sampling.seed = o.sampling.seed + static_cast<uint64_t>(d.index);
    go.ignore_eos = o.ignore_eos;
    go.between_windows = poll;  // the prompt's windows and every decode step
    GenerateResult gr = run_generate_job(s, ids, go);
    r.tokens = n + static_cast<int64_t>(gr.new_tokens.size());
    ojson j;
    j["id"] = ojson::parse(d.id_json);
    j["index"] = d.index;
    j["prompt_tokens"] = n;
    j["new_tokens"] = gr.new_tokens;
    if (d.has_text || s.has_tokenizer()) {
        // The model's vocabulary may be larger than the tokenizer's (padded embeddings): such
        // ids show as "<id:N>" in the text and are also listed, instead of failing the job.
        Tokenizer& tok = s.get_tokenizer(kWithoutTokenizer);
        std::vector<int32_t> unknown;
        for (int32_t t : gr.new_tokens) {
            if (t >= tok.vocab_size()) unknown.push_back(t);
        }
        j["text"] = tok.decode(gr.new_tokens);
        if (!unknown.empty()) j["ids_without_text"] = unknown;
    }
    j["stopped_at_eos"] = gr.stopped_at_eos;
    r.record = dump_line(j);
    return r;
}

}  // namespace

BatchResult run_batch_job(Session& s, const BatchOptions& opts) {
    FOT_CHECK(opts.task != BatchTask::kGenerate || opts.max_new_tokens >= 1,
              "max_new_tokens must be >= 1 for the generate task");
    Timer timer;
    const bool root = s.is_root();
    BatchResult result;

    // Rank 0: corpus, output, the order of the work.
    std::unique_ptr<Corpus> corpus;
    std::unique_ptr<RecordLog> log;
    std::unique_ptr<Progress> progress;
    std::vector<int64_t> order;
    size_t next_pos = 0;
    int64_t run_docs = 0, run_errors = 0, run_tokens = 0, run_cost = 0;
    ojson error_examples = ojson::array();
    std::vector<int64_t> docs_by_group(static_cast<size_t>(s.world.dp()), 0);
    if (root) {
        CorpusSpec spec = opts.corpus;
        spec.vocab_size = s.model_config.vocab_size;
        corpus = Corpus::open(spec);
        refuse_outputs_over_inputs(s, opts, *corpus);
        if (!opts.summary_path.empty()) {  // now, not after the whole job
            std::error_code ec;
            const fs::path dir = fs::absolute(opts.summary_path, ec).parent_path();
            FOT_CHECK(fs::is_directory(dir, ec), "summary ", opts.summary_path, ": directory ",
                      dir.string(), " does not exist; create it or choose another --summary");
        }
        // Fail now, not once per record (generate records carry text whenever they can).
        if (corpus->has_text() || (opts.task == BatchTask::kGenerate && s.has_tokenizer())) {
            s.get_tokenizer(kWithoutTokenizer);
        }
        RecordLogOptions lo;
        lo.journal = opts.journal;
        lo.restart = opts.restart;
        lo.fingerprint = fingerprint(s, opts, *corpus);
        log = std::make_unique<RecordLog>(opts.output, lo);
        int64_t total_cost = 0;
        for (int64_t i = 0; i < corpus->size(); ++i) {
            if (log->done(i)) continue;
            order.push_back(i);
            total_cost += corpus->cost_hint(i);
        }
        if (s.world.dp() > 1) {
            std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
                return corpus->cost_hint(a) > corpus->cost_hint(b);
            });
        }
        if (log->resumed() > 0) {
            FOT_LOG(kInfo) << "resuming " << opts.output << ": " << log->resumed() << " of "
                           << corpus->size() << " records already written, " << order.size()
                           << " to go";
        }
        FOT_LOG(kDebug) << "corpus: " << corpus->describe();
        progress = std::make_unique<Progress>(opts.label, static_cast<int64_t>(order.size()),
                                              total_cost, opts.progress_interval_s, s.run.quiet);
    }

    DispatchHooks hooks;
    hooks.next = [&]() -> std::optional<WorkItem> {
        if (next_pos >= order.size()) return std::nullopt;
        const int64_t i = order[next_pos++];
        return WorkItem{i, serialize_document(corpus->read(i))};
    };
    hooks.run = [&](const WorkItem& item, const std::function<void()>& poll) {
        return run_document(s, opts, item, poll);
    };
    hooks.done = [&](WorkResult r, int group) {
        log->append(r.index, r.ok, r.record);
        ++run_docs;
        ++docs_by_group[static_cast<size_t>(group)];
        run_tokens += r.tokens;
        run_cost += corpus->cost_hint(r.index);
        if (!r.ok) {
            ++run_errors;
            if (error_examples.size() < 10) error_examples.push_back(ojson::parse(r.record));
        }
        progress->update(run_docs, run_cost, run_tokens, run_errors);
    };
    const DispatchStats stats = run_dispatch(s.world, *s.world_comm, hooks);

    // Per-rank statistics for the summary: [items, tokens, busy us, total us] from each rank.
    const int P = s.world.world_size();
    std::vector<int64_t> mine = {stats.items, stats.tokens,
                                 static_cast<int64_t>(stats.busy_seconds * 1e6),
                                 static_cast<int64_t>(stats.total_seconds * 1e6)};
    std::vector<int64_t> all(static_cast<size_t>(4 * P));
    s.world_comm->all_gather(parallel::host_view(mine.data(), 4),
                             parallel::host_view(all.data(), 4 * P));

    int32_t exit_code = 0;
    if (root) {
        progress->finish();
        const double seconds = timer.seconds();
        result.documents = corpus->size();
        result.written = log->records();
        result.errors = log->error_records();
        FOT_ASSERT(result.written == result.documents);
        exit_code = result.errors > 0 ? kExitErrorRecords : 0;
        ojson j;
        j["task"] = batch_task_name(opts.task);
        j["input"] = opts.corpus.path;
        j["output"] = opts.output;
        j["documents"] = result.documents;
        j["written"] = result.written;
        j["ok"] = result.written - result.errors;
        j["errors"] = result.errors;
        j["resumed"] = log->resumed();
        ojson run;
        run["documents"] = run_docs;
        run["errors"] = run_errors;
        run["tokens"] = run_tokens;
        run["seconds"] = seconds;
        run["tokens_per_second"] = seconds > 0 ? run_tokens / seconds : 0.0;
        run["documents_per_second"] = seconds > 0 ? run_docs / seconds : 0.0;
        j["this_run"] = std::move(run);
        j["layout"] = {
            {"world", P}, {"dp", s.world.dp()}, {"tp", s.world.tp()}, {"mp", s.world.mp()}};
        j["documents_by_group"] = docs_by_group;
        ojson ranks = ojson::array();
        for (int r = 0; r < P; ++r) {
            const parallel::World w(P, r, s.world.tp(), s.world.mp());
            ranks.push_back({{"rank", r},
                             {"group", w.group()},
                             {"documents", all[4 * r]},
                             {"tokens", all[4 * r + 1]},
                             {"busy_seconds", all[4 * r + 2] / 1e6},
                             {"seconds", all[4 * r + 3] / 1e6}});
        }
        j["ranks"] = std::move(ranks);
        j["error_examples"] = std::move(error_examples);
        if (opts.task == BatchTask::kScore) {
            // From the whole output, so that a resumed job sums every run's records.
            const CorpusScore corpus = corpus_score_from_records(opts.output);
            j["corpus"] = ojson::parse(corpus_score_json(corpus));
            FOT_LOG(kInfo) << opts.label << ": corpus of " << describe_corpus_score(corpus);
        }
        j["exit_code"] = exit_code;
        result.summary_json = dump_line(j);
        if (!opts.summary_path.empty()) {
            const std::string tmp = opts.summary_path + ".partial";
            TempFileGuard guard(tmp);
            {
                std::ofstream out(tmp);
                FOT_CHECK(out, "cannot write the summary to ", opts.summary_path);
                out << j.dump(2, ' ', false, ojson::error_handler_t::replace) << "\n";
                FOT_CHECK(out.flush(), "write error on ", tmp);
            }
            fs::rename(tmp, opts.summary_path);
        }
    }
    s.world_comm->broadcast_value(exit_code, 0);
    result.exit_code = exit_code;
    return result;
}

}  // namespace fot
