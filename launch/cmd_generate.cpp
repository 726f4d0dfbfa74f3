// fotrt generate: greedy or sampled generation after a (long) prompt.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/job_options.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/generate_job.h"
#include "runtime/jobs/stats.h"

namespace fot::cli {

namespace {

const char* const kWithoutTokenizer =
    "give the prompt as token ids with --ids; the new tokens are printed as ids";

// What `fotrt generate` reads from its flags; the generation defaults are GenerateOptions'.
struct GenerateCommand {
    std::string ids, prompt, prompt_file;
    GenerateOptions gen;
    bool json = false, stats = false;
};

const OptionTable<GenerateCommand>& generate_options() {
    static const OptionTable<GenerateCommand> table = [] {
        OptionTable<GenerateCommand> t;
        t.add(flag("ids", "IDS.json", "prompt token ids: a flat JSON list"), FOT_FIELD(ids),
              text_value());
        t.add(flag("prompt", "TEXT", "prompt text (tokenized with the model's tokenizer.model)"),
              FOT_FIELD(prompt), text_value());
        t.add(flag("prompt-file", "FILE", "read the prompt text from a file"),
              FOT_FIELD(prompt_file), text_value());
        add_generation_rows(t, FOT_FIELD(gen), 0, "tokens to generate", "random seed for sampling",
                            /*job=*/false);
        t.add(switch_flag("json",
                          "print a JSON object with new_tokens (and text when a tokenizer exists)"),
              FOT_FIELD(json), boolean_value());
        t.add(switch_flag("stats",
                          "print per-rank memory statistics to stderr (always in --json output)"),
              FOT_FIELD(stats), boolean_value());
        return t;
    }();
    return table;
}

}  // namespace

Args generate_args() {
    Args args("fotrt generate",
              "Feeds the prompt in one model call, then generates one token per call with the\n"
              "local cache and the FoT memory (flushing the local cache into memory every W\n"
              "tokens, as the reference). Greedy unless --temperature > 0.",
              {"fotrt generate --model M --prompt 'The capital of France is' --max-new-tokens 8",
               "fotrt generate --model M --ids prompt.json --max-new-tokens 16 --json",
               "fotrt generate --model M --prompt 'Hello' --precision fast   # bf16 operands",
               "fotrt generate --model M --prompt-file book.txt --temperature 0.7 --top-p 0.9 "
               "--seed 1"});
    args.add(generate_options());
    add_run_options(args);
    return args;
}

int cmd_generate(const Argv& argv) {
    Args args = generate_args();
    if (!args.parse(argv)) return 0;
    GenerateCommand cmd;
    args.apply(generate_options(), cmd);
    RunConfig run = resolve_run_config(args);
    const int inputs = args.has("ids") + args.has("prompt") + args.has("prompt-file");
    FOT_CHECK(inputs == 1, "fotrt generate: give exactly one of --ids, --prompt, --prompt-file");
    GenerateOptions& go = cmd.gen;
    go.show_progress = true;
    const bool json = cmd.json;

    auto world = parallel::make_world_communicator();
    auto session = open_session(run, *world);
    FOT_CHECK(session->world.dp() == 1,
              "fotrt generate runs one prompt: use --tp x --mp = ", world->size(),
              " ranks (got dp=", session->world.dp(), ")");
    const bool root = session->is_root();
    const bool text_mode = !args.has("ids");
    std::vector<int32_t> prompt;
    if (root) {
        if (args.has("ids")) {
            prompt = read_ids_json(cmd.ids);
        } else {
            std::string text = cmd.prompt;
            if (args.has("prompt-file")) {
                std::ifstream in(cmd.prompt_file, std::ios::binary);
                FOT_CHECK(in, "cannot read --prompt-file ", cmd.prompt_file);
                text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            }
            prompt = session->get_tokenizer(kWithoutTokenizer).encode(text, /*add_bos=*/true);
        }
        // Loaded (and checked against the model's vocabulary) before any work: --json
        // output carries the text whenever a tokenizer exists.
        if (session->has_tokenizer()) session->get_tokenizer(kWithoutTokenizer);
    }
    broadcast_ids(*world, prompt);

    // Text mode streams tokens to stdout as they come.
    std::string printed;
    std::vector<int32_t> so_far;
    if (root && text_mode && !json) {
        go.on_token = [&](int32_t tok) {
            so_far.push_back(tok);
            std::string all = session->get_tokenizer().decode(so_far);
            if (all.size() >= printed.size() && all.compare(0, printed.size(), printed) == 0) {
                std::fwrite(all.data() + printed.size(), 1, all.size() - printed.size(), stdout);
                std::fflush(stdout);
                printed = all;
            }
        };
    }
    GenerateResult r = run_generate_job(*session, prompt, go);
    const auto stats = collect_rank_stats(*session);
    if (!root) return 0;
    if (cmd.stats) std::cerr << format_rank_stats(stats);
    const int64_t n = static_cast<int64_t>(r.new_tokens.size());
    if (json) {
        nlohmann::json j;
        j["prompt_tokens"] = prompt.size();
        j["new_tokens"] = r.new_tokens;
        if (session->tokenizer) j["text"] = session->tokenizer->decode(r.new_tokens);
        j["stopped_at_eos"] = r.stopped_at_eos;
        j["memory_tokens"] = session->seq->memory_tokens();
        j["local_tokens"] = session->seq->local_tokens(0);
        j["prefill_seconds"] = r.prefill_seconds;
        j["decode_ms_per_token"] = n > 1 ? 1000.0 * r.decode_seconds / (n - 1) : 0.0;
        j["memory_stats"] = stats;
        std::cout << j.dump() << std::endl;
    } else if (text_mode) {
        std::cout << std::endl;
    } else {
        for (int64_t i = 0; i < n; ++i) std::cout << (i ? " " : "") << r.new_tokens[i];
        std::cout << std::endl;
    }
    FOT_LOG(kInfo) << "prompt " << prompt.size() << " tokens in " << r.prefill_seconds << " s; "
                   << n << " new tokens"
                   << (n > 1 ? ", " + std::to_string(1000.0 * r.decode_seconds / (n - 1)) +
                                   " ms/token"
                             : std::string());
    return 0;
}

}  // namespace fot::cli
