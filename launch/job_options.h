// Option rows shared by the job commands, so that an option that means the same in two
// commands is declared once: the corpus rows of fotrt score and fotrt batch, and the
// generation rows of fotrt generate and fotrt batch --task generate. fotrt batch passes
// `job` = true: its rows also get their job-YAML keys (the flag with '_', see
// config/run_config.h parse_job_yaml).
#pragma once

#include <string>

#include "config/options.h"
#include "runtime/jobs/batch_job.h"
#include "runtime/jobs/corpus.h"

namespace fot::cli {

namespace job_detail {
inline OptionSpec with_key(OptionSpec spec, bool job, const char* key) {
    return job ? spec.in_yaml(key) : spec;
}
}  // namespace job_detail

// u16 | u32 -> 2 | 4 bytes per token id (CorpusSpec::token_bytes; 0 = from the file sizes).
inline ValueType<int> token_width_value() {
    return choice<int>(
        "u16 or u32", [](const std::string& s, int* out) { return parse_token_width(s, out); },
        [](const int& b) {
            return std::string(b == 2 ? "u16" : b == 4 ? "u32" : "");
        },
        [](const int& b) { return b == 0 || b == 2 || b == 4; });
}

// The corpus and its records: --input, --output, --offsets, --token-dtype,
// --progress-interval, into BatchOptions.
inline void add_corpus_rows(OptionTable<BatchOptions>& t, const std::string& output_help,
                            bool job) {
    using job_detail::with_key;
    t.add(with_key(flag("input", "CORPUS", "JSONL file, directory of .txt files, or a token .bin")
                       .must_be_given(),
                   job, "input"),
          FOT_FIELD(corpus.path), text_value());
    t.add(with_key(flag("output", "OUT.jsonl", output_help).must_be_given(), job, "output"),
          FOT_FIELD(output), text_value());
    t.add(with_key(flag("offsets", "FILE", "offsets of a token .bin: n + 1 little-endian uint64")
                       .default_is("the .bin path with .offsets"),
                   job, "offsets"),
          FOT_FIELD(corpus.offsets_path), text_value());
    t.add(with_key(flag("token-dtype", "u16|u32", "id width of a token .bin")
                       .default_is("from the file sizes"),
                   job, "token_dtype"),
          FOT_FIELD(corpus.token_bytes), token_width_value());
    t.add(with_key(flag("progress-interval", "SECONDS",
                        "seconds between progress lines when stderr is not a terminal; 0 = none"),
                   job, "progress_interval"),
          FOT_FIELD(progress_interval_s), real(0));
}

// Generation: --max-new-tokens (at least `min_new_tokens`), --temperature, --top-p, --seed,
// --ignore-eos, into the struct `opts(target)` (GenerateOptions or BatchOptions: the defaults
// are that struct's). `seed_help` says how the seed is used.
template <typename T, typename Opts>
void add_generation_rows(OptionTable<T>& t, Opts opts, int64_t min_new_tokens,
                         const std::string& max_new_tokens_help, const std::string& seed_help,
                         bool job) {
    using job_detail::with_key;
    const std::string pre = job ? "generate: " : "";
    t.add(
        with_key(flag("max-new-tokens", "N", pre + max_new_tokens_help), job, "max_new_tokens"),
        [opts](auto& c) -> auto& { return opts(c).max_new_tokens; },
        integer<int64_t>(min_new_tokens));
    t.add(
        with_key(flag("temperature", "T", pre + "sampling temperature; 0 = greedy"), job,
                 "temperature"),
        [opts](auto& c) -> auto& { return opts(c).sampling.temperature; }, real(0));
    t.add(
        with_key(
            flag("top-p", "P", pre + "nucleus sampling: keep the most likely tokens up to mass P"),
            job, "top_p"),
        [opts](auto& c) -> auto& { return opts(c).sampling.top_p; }, real(0, 1, /*min_open=*/true));
    t.add(
        with_key(flag("seed", "S", pre + seed_help), job, "seed"),
        [opts](auto& c) -> auto& { return opts(c).sampling.seed; }, integer<uint64_t>());
    t.add(
        with_key(switch_flag("ignore-eos", pre + "keep generating after the end-of-sequence token"),
                 job, "ignore_eos"),
        [opts](auto& c) -> auto& { return opts(c).ignore_eos; }, boolean_value());
}

}  // namespace fot::cli
