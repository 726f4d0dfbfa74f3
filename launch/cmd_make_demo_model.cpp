// fotrt make-demo-model: writes the constructed demo checkpoint (runtime/jobs/demo_model.h).
#include <iostream>

#include "config/run_config.h"
#include "launch/args.h"
#include "launch/commands.h"
#include "runtime/jobs/demo_model.h"

namespace fot::cli {

namespace {

struct MakeDemoCommand {
    std::string out;
    DType dtype = DType::kF32;
    bool print_config = false;
};

const OptionTable<MakeDemoCommand>& make_demo_options() {
    static const OptionTable<MakeDemoCommand> table = [] {
        OptionTable<MakeDemoCommand> t;
        t.add(flag("out", "DIR", "directory to write (created when missing; files replaced)")
                  .must_be_given(),
              FOT_FIELD(out), text_value());
        t.add(flag("dtype", "f32|bf16|f16",
                   "dtype of the written weights (the eval tests use f32; bf16 measured 15/15 on "
                   "kv 4k)"),
              FOT_FIELD(dtype),
              choice<DType>(
                  "f32, bf16 or f16",
                  [](const std::string& s, DType* out) {
                      return (s == "f32" || s == "bf16" || s == "f16") &&
                             parse_storage_dtype(s, out);
                  },
                  [](const DType& d) { return std::string(dtype_name(d)); }));
        t.add(switch_flag("print-config", "also print the written config.json"),
              FOT_FIELD(print_config), boolean_value());
        return t;
    }();
    return table;
}

}  // namespace

Args make_demo_model_args() {
    Args args(
        "fotrt make-demo-model",
        "Writes a small LongLLaMA checkpoint (config.json, model.safetensors, tokenizer.model)\n"
        "whose weights are constructed, not trained: a previous-token layer and a memory\n"
        "layer doing induction on the previous two tokens, so it answers the `fotrt eval`\n"
        "tasks (passkey, number, kv, dict) from memory at any length, on any layout. Its\n"
        "tokenizer is trained here on the tasks' text. No download; about a second.\n"
        "See docs/demo-model.md for the construction.",
        {"fotrt make-demo-model --out models/demo",
         "fotrt make-demo-model --out models/demo && fotrt eval --model models/demo "
         "--task kv --lengths 4k,16k"});
    args.add(make_demo_options());
    return args;
}

int cmd_make_demo_model(const Argv& argv) {
    Args args = make_demo_model_args();
    if (!args.parse(argv)) return 0;
    MakeDemoCommand cmd;
    args.apply(make_demo_options(), cmd);
    const DemoModel m = build_demo_model();
    write_demo_model(m, cmd.out, cmd.dtype);
    if (cmd.print_config) std::cout << model_config_to_json(m.config) << "\n";
    std::cout << "wrote the demo model to " << cmd.out << " (vocab " << m.config.vocab_size
              << ", hidden " << m.config.hidden_size << ", W " << m.config.max_position_embeddings
              << ", mem_layers [1])" << std::endl;
    return 0;
}

}  // namespace fot::cli
