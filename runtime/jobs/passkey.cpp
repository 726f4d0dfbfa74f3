#include "runtime/jobs/passkey.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "runtime/core/status.h"

namespace fot {

namespace {

constexpr const char* kTask =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there.";
constexpr const char* kGarbage =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
constexpr const char* kQuestion = "What is the pass key? The pass key is";

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace

std::string passkey_filler(int64_t chars) {
    FOT_CHECK(chars >= 0, "passkey_filler: negative length");
    const std::string unit = std::string(kGarbage) + " ";
    std::string out;
    out.reserve(static_cast<size_t>(chars));
    while (static_cast<int64_t>(out.size()) < chars) out += unit;
    out.resize(static_cast<size_t>(chars));
    return out;
}

PasskeyPrompt passkey_prompt_text(int64_t n_garbage, double depth, int key) {
    FOT_CHECK(depth >= 0.0 && depth <= 1.0, "passkey depth ", depth, " is not in [0, 1]");
    PasskeyPrompt p;
    p.n_garbage = n_garbage;
    p.n_prefix =
        std::clamp<int64_t>(std::llround(depth * static_cast<double>(n_garbage)), 0, n_garbage);
    p.answer = std::to_string(key);
    const std::string info =
        "The pass key is " + p.answer + ". Remember it. " + p.answer + " is the pass key.";
    const std::string filler = passkey_filler(std::max(p.n_prefix, n_garbage - p.n_prefix));
    p.text = kTask;
    p.text += "\n";
    p.text.append(filler, 0, static_cast<size_t>(p.n_prefix));
    p.text += "\n";
    p.key_char_offset = static_cast<int64_t>(p.text.size());
    p.text += info;
    p.text += "\n";
    p.text.append(filler, 0, static_cast<size_t>(n_garbage - p.n_prefix));
    p.text += "\n";
    p.text += kQuestion;
    return p;
}

PasskeyPrompt make_passkey_prompt(const Tokenizer& tok, int64_t target, double depth, int key) {
    auto build = [&](int64_t n_garbage) {
        PasskeyPrompt p = passkey_prompt_text(n_garbage, depth, key);
        p.ids = tok.encode(p.text, /*add_bos=*/true);
        return p;
    };
    PasskeyPrompt best = build(0);
    const int64_t fixed = static_cast<int64_t>(best.ids.size());
    FOT_CHECK(target > fixed, "passkey length ", target,
              " tokens is too short: the prompt without filler already has ", fixed, " tokens");
    const int64_t tol = std::max<int64_t>(1, target / 500);
    auto err = [&](const PasskeyPrompt& p) {
        return std::llabs(static_cast<int64_t>(p.ids.size()) - target);
    };
    // Filler tokens per character, to aim the search.
    const int64_t probe_chars = 4096;
    const double per_char =
        std::max(1e-3, static_cast<double>(tok.encode(passkey_filler(probe_chars), false).size()) /
                           probe_chars);
    // Steps from the linear estimate first; if they do not settle (the count is not exactly
    // linear in characters), bisection between the closest sizes below and above the target.
    int64_t lo = 0, hi = -1;  // tokens(lo) <= target < tokens(hi) once hi >= 0
    auto visit = [&](int64_t m) {
        PasskeyPrompt p = build(m);
        const int64_t got = static_cast<int64_t>(p.ids.size());
        if (got <= target) {
            lo = std::max(lo, m);
        } else {
            hi = hi < 0 ? m : std::min(hi, m);
        }
        if (err(p) < err(best)) best = std::move(p);
        return got;
    };
    int64_t n = std::llround(static_cast<double>(target - fixed) / per_char);
    for (int it = 0; it < 8 && err(best) > tol; ++it) {
        const int64_t got = visit(n);
        int64_t step = std::llround(static_cast<double>(target - got) / per_char);
        if (step == 0) step = got < target ? 1 : -1;
        n = std::max<int64_t>(0, n + step);
    }
    for (int it = 0; it < 100 && err(best) > tol; ++it) {
        if (hi < 0) {
            visit(std::max<int64_t>(1, 2 * lo));
        } else if (hi - lo > 1) {
            visit(lo + (hi - lo) / 2);
        } else {
            break;
        }
    }
    FOT_CHECK(err(best) * 100 <= target, "passkey: could not size a prompt of ", target,
              " tokens (closest: ", best.ids.size(), ")");
    best.answer_ids = tok.encode(best.answer, /*add_bos=*/false);
    return best;
}

std::vector<PasskeyTrial> plan_passkey_trials(const PasskeyPlan& plan) {
    FOT_CHECK(!plan.lengths.empty(), "passkey: no lengths given");
    FOT_CHECK(plan.trials >= 1, "passkey: trials must be >= 1, got ", plan.trials);
    FOT_CHECK(!plan.depths.empty() || plan.depth_bins >= 1, "passkey: depth bins must be >= 1");
    for (double d : plan.depths) {
        FOT_CHECK(d >= 0.0 && d <= 1.0, "passkey: depth ", d, " is not in [0, 1]");
    }
    std::vector<PasskeyTrial> out;
    const int64_t columns = plan.depths.empty() ? 1 : static_cast<int64_t>(plan.depths.size());
    for (size_t li = 0; li < plan.lengths.size(); ++li) {
        for (int64_t c = 0; c < columns; ++c) {
            for (int64_t t = 0; t < plan.trials; ++t) {
                uint64_t state = plan.seed;
                splitmix64(state);
                state ^= static_cast<uint64_t>(plan.lengths[li]) * 0x100000001b3ULL;
                splitmix64(state);
                state ^=
                    static_cast<uint64_t>(c) * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(t);
                PasskeyTrial tr;
                tr.length = plan.lengths[li];
                tr.length_index = static_cast<int64_t>(li);
                tr.trial = t;
                do {
                    tr.key = 1 + static_cast<int>(splitmix64(state) % 49999);
                } while (has_repeated_digit_pair(std::to_string(tr.key)));
                if (plan.depths.empty()) {
                    tr.depth = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
                    tr.depth_index = std::min<int64_t>(
                        plan.depth_bins - 1,
                        static_cast<int64_t>(tr.depth * static_cast<double>(plan.depth_bins)));
                } else {
                    tr.depth = plan.depths[static_cast<size_t>(c)];
                    tr.depth_index = c;
                }
                out.push_back(tr);
            }
        }
    }
    return out;
}

std::vector<std::string> passkey_depth_labels(const PasskeyPlan& plan) {
    std::vector<std::string> labels;
    if (!plan.depths.empty()) {
        for (double d : plan.depths) {
            char buf[32];
            std::snprintf(buf, sizeof(buf), "%g", d);
            labels.push_back(buf);
        }
        return labels;
    }
    for (int64_t b = 0; b < plan.depth_bins; ++b) {
        const auto pct = [&](int64_t x) {
            return std::llround(100.0 * static_cast<double>(x) /
                                static_cast<double>(plan.depth_bins));
        };
        labels.push_back(str(pct(b), "-", pct(b + 1), "%"));
    }
    return labels;
}

}  // namespace fot
