// The synthetic long-context tasks of `fotrt eval` (runtime/jobs/passkey_job.h runs them):
// deterministic generators that need no download.
//
//   passkey  the LongLLaMA / Landmark-Attention prompt (runtime/jobs/passkey.h).
//   number   InfiniteBench's number_string style: the passkey prompt with a 10-digit number
//            ("The sequence of digits is N. Remember it. N is the sequence of digits.").
//   kv       key-value retrieval: a list "k1 k2 v." of random pairs (a key is two made-up
//            words, a value one made-up word, every key distinct), then
//            "... the value of this key: k1 k2"; the answer is v.
//   dict     dictionary lookup (FoT paper style): up to 128 entries "k means v." (k one
//            made-up word, each key once) spread through the passkey filler, then
//            "What does k mean? k means"; the answer is v.
//
// Every prompt holds its needle (the key line / the asked pair) exactly once, at the requested
// depth (share of the haystack before it), and is sized in tokens of the model's tokenizer
// (within 1% of the requested length). Numbers and answers never repeat a digit pair, so a
// model that continues the text by looking back at the previous two tokens (the demo model,
// runtime/jobs/demo_model.h) is not given an ambiguous key. A prompt depends only on
// (task, length, depth, seed): the same seed gives the same prompt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/io/tokenizer.h"

namespace fot {

enum class EvalTask { kPasskey, kNumber, kKv, kDict };

// "passkey" | "number" | "kv" | "dict"; throws fot::Error naming the choices.
EvalTask parse_eval_task(const std::string& name);
const char* eval_task_name(EvalTask task);

struct TaskPrompt {
    std::string text;
    std::string answer;  // the expected answer text, e.g. "31337" or "bolu"
    std::string needle;  // the text that holds the answer (once in `text`)
    int64_t needle_char_offset = 0;
    int64_t haystack_units = 0;       // filler characters (passkey, number, dict) or pairs (kv)
    int64_t needle_unit = 0;          // haystack units before the needle
    std::vector<int32_t> ids;         // the prompt, with BOS
    std::vector<int32_t> answer_ids;  // the answer as the prompt's text continues, no BOS
};

// The prompt text with `units` haystack units (no tokenization). `seed` picks the key, the
// value and (kv, dict) the distractors. Throws fot::Error for a depth outside [0, 1] or a kv
// list longer than the 16384 distinct keys.
TaskPrompt task_prompt_text(EvalTask task, int64_t units, double depth, uint64_t seed);
// A tokenized prompt of `target_tokens` tokens (within 1%). Throws fot::Error when the target
// is too small for the prompt without haystack, or too large for the task (kv).
TaskPrompt make_task_prompt(EvalTask task, const Tokenizer& tok, int64_t target_tokens,
                            double depth, uint64_t seed);

// The made-up words of kv and dict: 128 key words and 32 value words, all distinct.
const std::vector<std::string>& eval_key_words();
const std::vector<std::string>& eval_value_words();
// True when the decimal digits of `s` hold some pair of adjacent digits twice.
bool has_repeated_digit_pair(const std::string& s);
// Text covering every task's vocabulary (every word many times), one sentence per entry:
// what the demo model's tokenizer is trained on.
std::vector<std::string> eval_training_sentences();

}  // namespace fot
