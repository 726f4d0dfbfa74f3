#include "launch/commands.h"

namespace fot::cli {

const std::vector<CommandInfo>& commands() {
    static const std::vector<CommandInfo> list = {
        {"logits", "write the float32 [n, vocab] logits of one forward over a long input",
         logits_args, cmd_logits},
        {"generate", "generate text or token ids after a long prompt (greedy or sampled)",
         generate_args, cmd_generate},
        {"score",
         "per-document NLL and perplexity of a corpus (JSONL, .txt directory or token .bin)",
         score_args, cmd_score},
        {"passkey", "passkey retrieval accuracy by prompt length x key depth", passkey_args,
         cmd_passkey},
        {"batch", "resumable corpus runner (score or generate) for clusters; --config JOB.yaml",
         batch_args, cmd_batch},
        {"serve", "OpenAI-compatible HTTP server (completions, streaming, batched decode)",
         serve_args, cmd_serve},
        {"inspect", "print a model's configuration, parameter count and memory cost per token",
         inspect_args, cmd_inspect},
        {"convert", "convert a checkpoint (PyTorch .bin or safetensors) to sharded safetensors",
         convert_args, cmd_convert},
        {"tokenize", "text to token ids (IDS.json) with a model's tokenizer.model", tokenize_args,
         cmd_tokenize},
        {"detokenize", "token ids to text with a model's tokenizer.model", detokenize_args,
         cmd_detokenize},
    };
    return list;
}

}  // namespace fot::cli
