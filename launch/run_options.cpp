#include "launch/run_options.h"

#include <filesystem>
#include <string>

#include "config/model_config.h"
#include "runtime/core/status.h"

namespace fot::cli {

namespace fs = std::filesystem;

const OptionTable<ConfigFile>& run_config_file_option() {
    static const OptionTable<ConfigFile> table = [] {
        OptionTable<ConfigFile> t;
        t.add(flag("config", "RUN.yaml",
                   "run configuration (see docs/configuration.md); flags given here override it"),
              FOT_FIELD(path), text_value());
        return t;
    }();
    return table;
}

void add_run_options(Args& args, const OptionTable<ConfigFile>& config_file) {
    args.add(config_file);
    args.add(run_options());
}

namespace {

// Flags over the YAML's values (or the defaults), then the checks the YAML cannot make.
RunConfig apply_run_flags(const Args& args, RunConfig c, const std::string& origin) {
    args.apply(run_options(), c);
    validate_run_config(c, origin).check();

    FOT_CHECK(!c.model.empty(), args.command(),
              ": --model is required (or 'model:' in the --config YAML; see ", args.command(),
              " --help)");
    std::error_code ec;
    FOT_CHECK(fs::is_directory(c.model, ec), args.command(), ": model directory '", c.model,
              "' does not exist or is not a directory");
    fs::path config_json = fs::path(c.model) / "config.json";
    FOT_CHECK(fs::is_regular_file(config_json, ec), args.command(), ": model directory '", c.model,
              "' holds no config.json (expected a Hugging Face checkpoint folder)");
    // An override that does not fit the model is blamed on where it came from (the flag or
    // the YAML), not on config.json, which open_session() would name. A config.json that does
    // not load is left to open_session() to report.
    if (c.last_context_length) {
        Result<ModelConfig> mc = load_model_config(config_json.string());
        if (mc.ok() && *c.last_context_length > mc.value().max_position_embeddings) {
            const std::string who =
                args.has("last-context-length")
                    ? args.command() + ": --last-context-length " +
                          std::to_string(*c.last_context_length)
                    : origin + ": last_context_length=" + std::to_string(*c.last_context_length);
            FOT_THROW(who, " exceeds the model's max_position_embeddings=",
                      mc.value().max_position_embeddings, " (", config_json.string(),
                      "): the final window would hold more tokens than the window length W; use "
                      "at most ",
                      mc.value().max_position_embeddings, " (config.json's own is ",
                      mc.value().last_context_length, ")");
        }
    }
    return c;
}

}  // namespace

RunConfig resolve_run_config(const Args& args) {
    if (args.has("config")) {
        const std::string origin = args.get("config");
        return apply_run_flags(args, load_run_config(origin).value(), origin);
    }
    return apply_run_flags(args, RunConfig{}, args.command());
}

RunConfig resolve_run_config(const Args& args, const RunConfig& from_yaml,
                             const std::string& origin) {
    return apply_run_flags(args, from_yaml, origin);
}

}  // namespace fot::cli
