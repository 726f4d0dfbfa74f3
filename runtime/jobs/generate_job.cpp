#include "runtime/jobs/generate_job.h"

#include "runtime/core/progress.h"
#include "runtime/core/status.h"
#include "runtime/core/timer.h"

namespace fot {

GenerateResult run_generate_job(Session& s, const std::vector<int32_t>& prompt,
                                const GenerateOptions& opts) {
    FOT_CHECK(opts.max_new_tokens >= 0, "--max-new-tokens must be >= 0");
    GenerateResult res;
    Sampler sampler(opts.sampling);
    LongLlama& m = *s.model;
    Sequence& seq = *s.seq;
    seq.reset();

    std::vector<float> row;
    ForwardOptions fo;
    fo.logits = LogitsRows::kLast;
    fo.on_logits = [&](int64_t, TensorView local) { row = s.gather_vocab(local); };
    const bool progress = opts.show_progress && s.is_root() && !s.run.quiet;
    ProgressLine prefill("prefill", "tokens", static_cast<int64_t>(prompt.size()), progress);
    ProgressLine decode("decode", "tokens", opts.max_new_tokens, progress);
    fo.before_window = [&](int64_t row0) {
        prefill.update(row0);  // a no-op once the prompt is in
        if (opts.between_windows) opts.between_windows();
    };

    Timer timer;
    std::vector<int32_t> feed = prompt;
    for (int64_t step = 0; step < opts.max_new_tokens; ++step) {
        m.forward(seq, feed, fo);
        if (step == 0) {
            prefill.update(static_cast<int64_t>(prompt.size()));
            prefill.finish();
            res.prefill_seconds = timer.seconds();
            timer.reset();
        }
        decode.update(step + 1);
        const int32_t tok = sampler.sample(row.data(), static_cast<int64_t>(row.size()));
        if (opts.keep_step_logits) res.step_logits.push_back(row);
        res.new_tokens.push_back(tok);
        res.steps.push_back({tok, seq.local_tokens(0), seq.memory_tokens()});
        if (opts.on_token) opts.on_token(tok);
        if (!opts.ignore_eos && tok == s.model_config.eos_token_id) {
            res.stopped_at_eos = true;
            break;
        }
        feed.assign(1, tok);
    }
    res.decode_seconds = opts.max_new_tokens > 1 ? timer.seconds() : 0.0;
    return res;
}

}  // namespace fot
