// fotrt convert: any supported checkpoint -> Hugging Face safetensors shards (see
// runtime/io/convert.h for what is validated, written and copied).
#include <iostream>
#include <optional>

#include "config/run_config.h"
#include "launch/args.h"
#include "launch/commands.h"
#include "runtime/core/logging.h"
#include "runtime/core/status.h"
#include "runtime/io/convert.h"

namespace fot::cli {

namespace {

// The options fill ConvertOptions directly: its defaults are the ones --help shows.
const OptionTable<ConvertOptions>& convert_options() {
    static const OptionTable<ConvertOptions> table = [] {
        OptionTable<ConvertOptions> t;
        t.add(flag("from", "DIR", "source model directory (config.json + weights)").must_be_given(),
              FOT_FIELD(from), text_value());
        t.add(flag("to", "DIR", "destination directory (created when missing)").must_be_given(),
              FOT_FIELD(to), text_value());
        ValueType<int64_t> bytes = byte_size(1);
        t.add(flag("max-shard-size", "SIZE",
                   "largest shard: 5GB, 500MB, 2GiB or a byte count (a larger tensor gets its own "
                   "shard)"),
              FOT_FIELD(max_shard_bytes),
              ValueType<size_t>{
                  bytes.expected,
                  [bytes](const std::string& text, size_t* out) {
                      int64_t v = 0;
                      std::string p = bytes.parse(text, &v);
                      if (p.empty()) *out = static_cast<size_t>(v);
                      return p;
                  },
                  [](const size_t&) { return std::string(); },
                  [](const size_t& v) { return format_byte_size(static_cast<int64_t>(v)); }});
        // "keep" is the unset std::optional: each tensor keeps its own dtype.
        t.add(flag("dtype", "keep|f32|bf16|f16",
                   "dtype of the written weights; f32 -> bf16/f16 rounds to nearest even"),
              FOT_FIELD(dtype),
              choice<std::optional<DType>>(
                  "keep, f32, bf16 or f16",
                  [](const std::string& s, std::optional<DType>* out) {
                      DType t;
                      if (s == "keep") {
                          out->reset();
                      } else if (parse_storage_dtype(s, &t)) {
                          *out = t;
                      } else {
                          return false;
                      }
                      return true;
                  },
                  [](const std::optional<DType>& d) {
                      return std::string(d ? dtype_name(*d) : "keep");
                  }));
        t.add(switch_flag("force",
                          "delete the weight files already in --to, then write the new ones"),
              FOT_FIELD(force), boolean_value());
        return t;
    }();
    return table;
}

}  // namespace

Args convert_args() {
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
    args.add(convert_options());
    return args;
}

int cmd_convert(const Argv& argv) {
    Args args = convert_args();
    if (!args.parse(argv)) return 0;
    ConvertOptions o;
    args.apply(convert_options(), o);
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
