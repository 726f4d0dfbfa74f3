// fotrt convert: any supported checkpoint -> Hugging Face safetensors shards (see
// runtime/io/convert.h for what is validated, written and copied).
#include <filesystem>
#include <iostream>

#include "launch/args.h"
#include "launch/commands.h"
#include "runtime/core/logging.h"
#include "runtime/core/status.h"
#include "runtime/io/convert.h"

namespace fot::cli {

int cmd_convert(const Argv& argv) {
    Args args("fotrt convert",
              "Converts a checkpoint (PyTorch .bin, sharded or not, or safetensors) into\n"
              "safetensors: model.safetensors, or model-0000i-of-0000n.safetensors shards plus\n"
              "model.safetensors.index.json when it exceeds --max-shard-size. config.json is\n"
              "copied (its torch_dtype updated when --dtype converts), and tokenizer.model,\n"
              "tokenizer_config.json, special_tokens_map.json and generation_config.json when\n"
              "present. The source is validated against config.json before anything is written;\n"
              "rotary_emb.inv_freq tensors are dropped. Progress goes to stderr.",
              {"fotrt convert --from models/long_llama_3b --to models/long_llama_3b_st",
               "fotrt convert --from ckpt_bin --to ckpt_bf16 --dtype bf16 --max-shard-size 2GB",
               "fotrt convert --from ckpt_bin --to ckpt_st --force   # replace existing weights"});
    args.option("from", "DIR", "source model directory (config.json + weights)");
    args.option("to", "DIR", "destination directory (created when missing)");
    args.option("max-shard-size", "SIZE",
                "largest shard: 5GB, 500MB, 2GiB or a byte count (a larger tensor gets its own "
                "shard)",
                "5GB");
    args.option("dtype", "keep|f32|bf16|f16",
                "dtype of the written weights; f32 -> bf16/f16 rounds to nearest even", "keep");
    args.flag("force", "delete the weight files already in --to, then write the new ones");
    if (!args.parse(argv)) return 0;
    FOT_CHECK(args.positional().empty(), "unexpected argument '", args.positional().front(),
              "' (see fotrt convert --help)");

    ConvertOptions o;
    o.from = args.require("from");
    o.to = args.require("to");
    o.max_shard_bytes = parse_byte_size(args.get("max-shard-size", "5GB"), "--max-shard-size");
    const std::string dtype = args.get("dtype", "keep");
    if (dtype != "keep") {
        DType t;
        FOT_CHECK(
            parse_dtype(dtype, &t) && (t == DType::kF32 || t == DType::kBF16 || t == DType::kF16),
            "--dtype must be keep, f32, bf16 or f16, got '", dtype, "'");
        o.dtype = t;
    }
    o.force = args.has("force");
    std::string current_file;
    o.progress = [&](size_t done, size_t total, const std::string& file) {
        // One line per shard started and every 64 tensors, so big models show movement
        // without flooding the terminal.
        if (file != current_file || done % 64 == 0 || done == total) {
            FOT_LOG(kInfo) << "convert: " << done << "/" << total << " tensors written (" << file
                           << ")";
            current_file = file;
        }
    };

    const ConvertSummary s = convert_checkpoint(o);
    FOT_LOG(kInfo) << "convert: " << s.source << " -> " << o.to << ": " << s.tensors << " tensors, "
                   << s.weight_bytes << " bytes in " << s.files.size() << " files";
    for (const std::string& f : s.files) std::cout << f << "\n";
    return 0;
}

}  // namespace fot::cli
