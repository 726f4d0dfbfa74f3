// Passkey retrieval: the LongLLaMA / Landmark-Attention evaluation
// (long_llama examples/utils/landmark_prompt.py, examples/passkey.py).
//
// A prompt is five lines joined with "\n":
//   task       "There is an important info hidden inside a lot of irrelevant text. Find it and
//               memorize them. I will quiz you about the important information there."
//   prefix     the first n_prefix characters of the filler
//   key line   "The pass key is K. Remember it. K is the pass key."
//   suffix     the first (n_garbage - n_prefix) characters of the filler
//   question   "What is the pass key? The pass key is"
// where the filler is "The grass is green. The sky is blue. The sun is yellow. Here we go.
// There and back again." repeated, joined with single spaces (the reference caps it at 5000
// repeats, about 120k tokens; here it has no cap), and the depth is n_prefix / n_garbage. The
// prompt is tokenized with BOS; the answer is str(K) tokenized without BOS; a trial is correct
// when greedy decoding of len(answer) tokens reproduces the answer exactly.
//
// The reference sizes prompts in filler characters; fotrt sizes them in tokens: the filler
// length is searched so that the prompt has the requested number of tokens (within 0.2%).
// Keys are uniform in [1, 50000) (redrawn while a digit pair repeats, as in eval_tasks.h) and
// depths uniform in [0, 1] (or fixed depths), drawn from a generator seeded with (seed, length,
// trial): the same seed gives the same prompts whatever the other lengths or the layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/io/tokenizer.h"
#include "runtime/jobs/eval_tasks.h"

namespace fot {

struct PasskeyPrompt {
    std::string text;
    std::string answer;               // the key as text, e.g. "31337"
    std::vector<int32_t> ids;         // the prompt, with BOS
    std::vector<int32_t> answer_ids;  // the answer, without BOS
    int64_t n_garbage = 0;            // filler characters (prefix + suffix)
    int64_t n_prefix = 0;             // filler characters before the key line
    int64_t key_char_offset = 0;      // where the key line starts in `text`
};

// The filler text, cut to `chars` characters (Python's garbage_inf[:chars]).
std::string passkey_filler(int64_t chars);
// The prompt text for a given filler size, depth in [0, 1] and key (no tokenization).
PasskeyPrompt passkey_prompt_text(int64_t n_garbage, double depth, int key);
// A tokenized prompt of `target_tokens` tokens (within 0.2%, at least 1 token). Throws
// fot::Error when target_tokens is too small to hold the prompt without filler.
PasskeyPrompt make_passkey_prompt(const Tokenizer& tok, int64_t target_tokens, double depth,
                                  int key);

// One planned trial (before tokenization).
struct PasskeyTrial {
    int64_t length = 0;  // requested prompt tokens
    int64_t length_index = 0;
    int64_t trial = 0;
    double depth = 0.0;
    int64_t depth_index = 0;  // column of the table (a fixed depth, or a depth bin)
    int key = 0;  // passkey: the key (no repeated digit pair); other tasks: the prompt's seed
};

struct PasskeyPlan {
    EvalTask task = EvalTask::kPasskey;  // `fotrt eval --task`; passkey for `fotrt passkey`
    std::vector<int64_t> lengths;
    std::vector<double> depths;  // fixed depths; empty = random depths in `depth_bins` bins
    int64_t depth_bins = 5;
    int64_t trials = 5;  // per length (random depths) or per (length, depth)
    uint64_t seed = 0;
};

// Every trial of the plan, lengths in the order given.
std::vector<PasskeyTrial> plan_passkey_trials(const PasskeyPlan& plan);
// Column labels of the table: "0.25" for fixed depths, "0-20%" for bins.
std::vector<std::string> passkey_depth_labels(const PasskeyPlan& plan);

}  // namespace fot
