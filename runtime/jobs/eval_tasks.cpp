#include "runtime/jobs/eval_tasks.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <numeric>

#include "runtime/core/status.h"
#include "runtime/jobs/passkey.h"

namespace fot {

namespace {

constexpr const char* kNumberTask =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "it. I will quiz you about the important information there.";
constexpr const char* kNumberQuestion = "What is the sequence of digits? The sequence of digits is";
constexpr const char* kKvTask =
    "Extract the value of the given key from the list of keys and values below. Each key is "
    "two words and its value is the word after it.";
constexpr const char* kKvQuestion = "Answer with the value of this key:";
constexpr const char* kDictTask =
    "Below is a dictionary of made-up words and their meanings, hidden inside a lot of "
    "irrelevant text. Find it and memorize it. I will quiz you about one of the words.";
constexpr int64_t kKvKeys = 128 * 128;

struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

// A 10-digit number (no leading zero) whose adjacent digit pairs are all different.
std::string make_number(Rng& rng) {
    std::string s(1, static_cast<char>('1' + rng.below(9)));
    while (s.size() < 10) {
        const char d = static_cast<char>('0' + rng.below(10));
        const std::string pair{s.back(), d};
        if (s.find(pair) == std::string::npos) s += d;
    }
    return s;
}

// Words of `letters` patterns, skipping any that occurs as a word in the fixed task texts.
std::vector<std::string> make_words(const std::string& c1, const std::string& v,
                                    const std::string& c2, bool cvcv, size_t count, size_t stride) {
    std::vector<std::string> all;
    for (char a : c1)
        for (char b : v)
            for (char c : c2) {
                if (cvcv) {
                    for (char d : v) all.push_back(std::string{a, b, c, d});
                } else {
                    all.push_back(std::string{a, b, c});
                }
            }
    const std::string fixed = std::string(" ") + kNumberTask + " " + kNumberQuestion + " " +
                              kKvTask + " " + kKvQuestion + " " + kDictTask + " " +
                              passkey_prompt_text(200, 0.5, 1).text + " means mean does ";
    std::vector<std::string> out;
    FOT_CHECK(std::gcd(stride, all.size()) == 1, "eval words: stride must visit every word");
    for (size_t i = 0; out.size() < count && i < stride * all.size(); i += stride) {
        const std::string& w = all[i % all.size()];
        if (fixed.find(" " + w + " ") != std::string::npos ||
            fixed.find(" " + w + ".") != std::string::npos ||
            std::find(out.begin(), out.end(), w) != out.end()) {
            continue;
        }
        out.push_back(w);
    }
    return out;
}

// Filler text with the needle (and, for dict, the other entries) inserted at sentence starts.
size_t sentence_start_at(const std::string& filler, size_t pos) {
    if (pos == 0) return 0;
    const size_t dot = filler.find(". ", pos - 1);
    return dot == std::string::npos ? filler.size() : dot + 2;
}

TaskPrompt number_text(int64_t chars, double depth, uint64_t seed) {
    Rng rng{seed};
    const std::string n = make_number(rng);
    TaskPrompt p;
    p.answer = n;
    p.needle =
        "The sequence of digits is " + n + ". Remember it. " + n + " is the sequence of digits.";
    p.haystack_units = chars;
    p.needle_unit = std::clamp<int64_t>(std::llround(depth * static_cast<double>(chars)), 0, chars);
    const std::string filler = passkey_filler(std::max(p.needle_unit, chars - p.needle_unit));
    p.text = std::string(kNumberTask) + "\n";
    p.text.append(filler, 0, static_cast<size_t>(p.needle_unit));
    p.text += "\n";
    p.needle_char_offset = static_cast<int64_t>(p.text.size());
    p.text += p.needle + "\n";
    p.text.append(filler, 0, static_cast<size_t>(chars - p.needle_unit));
    p.text += "\n";
    p.text += kNumberQuestion;
    return p;
}

TaskPrompt kv_text(int64_t pairs, double depth, uint64_t seed) {
    FOT_CHECK(pairs >= 1, "kv: a list needs at least one pair");
    FOT_CHECK(pairs <= kKvKeys, "kv: a list of ", pairs, " pairs is longer than the ", kKvKeys,
              " distinct keys (about 64k tokens); ask for a shorter length");
    const auto& keys = eval_key_words();
    const auto& values = eval_value_words();
    Rng rng{seed};
    // The first `pairs` entries of a random permutation of all keys (partial Fisher-Yates).
    std::vector<int32_t> perm(static_cast<size_t>(kKvKeys));
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t i = 0; i < pairs; ++i) {
        std::swap(perm[static_cast<size_t>(i)],
                  perm[static_cast<size_t>(i + rng.below(kKvKeys - i))]);
    }
    TaskPrompt p;
    p.haystack_units = pairs;
    p.needle_unit =
        std::clamp<int64_t>(std::llround(depth * static_cast<double>(pairs - 1)), 0, pairs - 1);
    p.text = std::string(kKvTask) + "\n";
    std::string asked;
    for (int64_t i = 0; i < pairs; ++i) {
        const int32_t k = perm[static_cast<size_t>(i)];
        const std::string key =
            keys[static_cast<size_t>(k / 128)] + " " + keys[static_cast<size_t>(k % 128)];
        const std::string& v =
            values[static_cast<size_t>(rng.below(static_cast<int64_t>(values.size())))];
        const std::string line = key + " " + v + ".";
        if (i == p.needle_unit) {
            p.needle_char_offset = static_cast<int64_t>(p.text.size());
            p.needle = line;
            p.answer = v;
            asked = key;
        }
        p.text += line;
        p.text += i + 1 < pairs ? " " : "\n";
    }
    p.text += std::string(kKvQuestion) + " " + asked;
    return p;
}

TaskPrompt dict_text(int64_t chars, double depth, uint64_t seed) {
    const auto& keys = eval_key_words();
    const auto& values = eval_value_words();
    Rng rng{seed};
    const int64_t entries = std::clamp<int64_t>(chars / 2000, 1, static_cast<int64_t>(keys.size()));
    std::vector<size_t> order(keys.size());
    std::iota(order.begin(), order.end(), 0);
    for (size_t i = 0; i < static_cast<size_t>(entries); ++i) {
        std::swap(order[i],
                  order[i + static_cast<size_t>(rng.below(static_cast<int64_t>(keys.size() - i)))]);
    }
    const std::string filler = passkey_filler(chars);
    // (position in the filler, entry); entry 0 is the asked one, at `depth`.
    std::vector<std::pair<size_t, int64_t>> at;
    at.emplace_back(
        sentence_start_at(filler,
                          static_cast<size_t>(std::llround(depth * static_cast<double>(chars)))),
        0);
    for (int64_t e = 1; e < entries; ++e) {
        const double f = (static_cast<double>(e) - 0.5) / static_cast<double>(entries - 1);
        at.emplace_back(
            sentence_start_at(filler, static_cast<size_t>(f * static_cast<double>(chars))), e);
    }
    std::stable_sort(at.begin(), at.end());
    TaskPrompt p;
    p.haystack_units = chars;
    p.text = std::string(kDictTask) + "\n";
    size_t done = 0;
    std::string asked;
    for (const auto& [pos, e] : at) {
        p.text.append(filler, done, pos - done);
        done = pos;
        const std::string& k = keys[order[static_cast<size_t>(e)]];
        const std::string& v =
            values[static_cast<size_t>(rng.below(static_cast<int64_t>(values.size())))];
        const std::string entry = k + " means " + v + ".";
        if (e == 0) {
            p.needle_char_offset = static_cast<int64_t>(p.text.size());
            p.needle_unit = static_cast<int64_t>(pos);
            p.needle = entry;
            p.answer = v;
            asked = k;
        }
        p.text += entry + " ";
    }
    p.text.append(filler, done, std::string::npos);
    p.text += "\nWhat does " + asked + " mean? " + asked + " means";
    return p;
}

// A key in [1, 50000) with no repeated digit pair, from `seed` (the passkey task's key).
int passkey_key(uint64_t seed) {
    if (seed >= 1 && seed < 50000 && !has_repeated_digit_pair(std::to_string(seed))) {
        return static_cast<int>(seed);
    }
    Rng rng{seed};
    for (;;) {
        const int k = 1 + static_cast<int>(rng.below(49999));
        if (!has_repeated_digit_pair(std::to_string(k))) return k;
    }
}

}  // namespace

EvalTask parse_eval_task(const std::string& name) {
    if (name == "passkey") return EvalTask::kPasskey;
    if (name == "number") return EvalTask::kNumber;
    if (name == "kv") return EvalTask::kKv;
    if (name == "dict") return EvalTask::kDict;
    FOT_THROW("unknown task '", name, "': choose passkey, number, kv or dict");
}

const char* eval_task_name(EvalTask task) {
    switch (task) {
        case EvalTask::kPasskey:
            return "passkey";
        case EvalTask::kNumber:
            return "number";
        case EvalTask::kKv:
            return "kv";
        case EvalTask::kDict:
            return "dict";
    }
    return "?";
}

bool has_repeated_digit_pair(const std::string& s) {
    for (size_t i = 0; i + 1 < s.size(); ++i) {
        if (s.find(s.substr(i, 2), i + 1) != std::string::npos) return true;
    }
    return false;
}

const std::vector<std::string>& eval_key_words() {
    static const std::vector<std::string> words =
        make_words("bdfgklmnprstvz", "aeiou", "bdgkmnprt", false, 128, 11);
    return words;
}

const std::vector<std::string>& eval_value_words() {
    static const std::vector<std::string> words = [] {
        // Four letters (CVCV): never a key word.
        return make_words("bdfgklmnprst", "aeiou", "lmnrst", true, 32, 53);
    }();
    return words;
}

TaskPrompt task_prompt_text(EvalTask task, int64_t units, double depth, uint64_t seed) {
    FOT_CHECK(depth >= 0.0 && depth <= 1.0, "depth ", depth, " is not in [0, 1]");
    FOT_CHECK(units >= 0, "negative haystack size");
    switch (task) {
        case EvalTask::kPasskey: {
            PasskeyPrompt pk = passkey_prompt_text(units, depth, passkey_key(seed));
            TaskPrompt p;
            p.text = std::move(pk.text);
            p.answer = pk.answer;
            p.needle = "The pass key is " + pk.answer + ". Remember it. " + pk.answer +
                       " is the pass key.";
            p.needle_char_offset = pk.key_char_offset;
            p.haystack_units = pk.n_garbage;
            p.needle_unit = pk.n_prefix;
            return p;
        }
        case EvalTask::kNumber:
            return number_text(units, depth, seed);
        case EvalTask::kKv:
            return kv_text(std::max<int64_t>(units, 1), depth, seed);
        case EvalTask::kDict:
            return dict_text(units, depth, seed);
    }
    FOT_THROW("unknown task");
}

TaskPrompt make_task_prompt(EvalTask task, const Tokenizer& tok, int64_t target, double depth,
                            uint64_t seed) {
    const char* name = eval_task_name(task);
    auto build = [&](int64_t units) {
        TaskPrompt p = task_prompt_text(task, units, depth, seed);
        p.ids = tok.encode(p.text, /*add_bos=*/true);
        return p;
    };
    const int64_t min_units = task == EvalTask::kKv ? 1 : 0;
    TaskPrompt best = build(min_units);
    const int64_t fixed = static_cast<int64_t>(best.ids.size());
    FOT_CHECK(target > fixed, name, " length ", target,
              " tokens is too short: the prompt without filler already has ", fixed, " tokens");
    const int64_t tol = std::max<int64_t>(1, target / 500);
    auto err = [&](const TaskPrompt& p) {
        return std::llabs(static_cast<int64_t>(p.ids.size()) - target);
    };
    // Tokens per haystack unit, measured on a probe, to aim the search.
    const int64_t probe = task == EvalTask::kKv ? 64 : 8192;
    const double per_unit = std::max(
        1e-3,
        static_cast<double>(static_cast<int64_t>(build(min_units + probe).ids.size()) - fixed) /
            static_cast<double>(probe));
    const int64_t max_units = task == EvalTask::kKv ? kKvKeys : (int64_t{1} << 40);
    int64_t lo = min_units, hi = -1;  // tokens(lo) <= target < tokens(hi) once hi >= 0
    auto visit = [&](int64_t m) {
        TaskPrompt p = build(m);
        const int64_t got = static_cast<int64_t>(p.ids.size());
        if (got <= target) {
            lo = std::max(lo, m);
        } else {
            hi = hi < 0 ? m : std::min(hi, m);
        }
        if (err(p) < err(best)) best = std::move(p);
        return got;
    };
    int64_t n = min_units + std::llround(static_cast<double>(target - fixed) / per_unit);
    FOT_CHECK(n <= max_units + max_units / 50, name, " length ", target,
              " tokens is more than this task can fill (about ",
              static_cast<int64_t>(static_cast<double>(max_units) * per_unit), " tokens)");
    n = std::min(n, max_units);
    for (int it = 0; it < 8 && err(best) > tol; ++it) {
        const int64_t got = visit(n);
        int64_t step = std::llround(static_cast<double>(target - got) / per_unit);
        if (step == 0) step = got < target ? 1 : -1;
        n = std::clamp<int64_t>(n + step, min_units, max_units);
    }
    for (int it = 0; it < 100 && err(best) > tol; ++it) {
        if (hi < 0) {
            if (lo >= max_units) break;
            visit(std::min(max_units, std::max<int64_t>(1, 2 * lo)));
        } else if (hi - lo > 1) {
            visit(lo + (hi - lo) / 2);
        } else {
            break;
        }
    }
    FOT_CHECK(err(best) * 100 <= target, name, ": could not size a prompt of ", target,
              " tokens (closest: ", best.ids.size(), ")");
    // The answer as the prompt continues: the tokens of " answer" after the prompt's text.
    const std::vector<int32_t> with = tok.encode(best.text + " " + best.answer, true);
    const bool prefix =
        with.size() > best.ids.size() && std::equal(best.ids.begin(), best.ids.end(), with.begin());
    best.answer_ids =
        prefix ? std::vector<int32_t>(with.begin() + static_cast<std::ptrdiff_t>(best.ids.size()),
                                      with.end())
               : tok.encode(best.answer, /*add_bos=*/false);
    return best;
}

std::vector<std::string> eval_training_sentences() {
    std::vector<std::string> out;
    auto add_lines = [&](const std::string& text) {
        size_t b = 0;
        while (b <= text.size()) {
            size_t e = text.find('\n', b);
            if (e == std::string::npos) e = text.size();
            if (e > b) out.push_back(text.substr(b, e - b));
            b = e + 1;
        }
    };
    for (uint64_t s = 1; s <= 60; ++s) {
        add_lines(task_prompt_text(EvalTask::kPasskey, 300, 0.5, 1 + s * 811).text);
        add_lines(task_prompt_text(EvalTask::kNumber, 300, 0.5, s).text);
        add_lines(task_prompt_text(EvalTask::kDict, 3000, 0.5, s).text);
    }
    // kv lists, short sentences so that every key and value word is seen many times.
    for (uint64_t s = 1; s <= 400; ++s) {
        const TaskPrompt p = task_prompt_text(EvalTask::kKv, 40, 0.5, 1000 + s);
        add_lines(p.text);
    }
    return out;
}

}  // namespace fot
