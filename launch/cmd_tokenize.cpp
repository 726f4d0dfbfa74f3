// fotrt tokenize / fotrt detokenize: text <-> token ids with a model's tokenizer.model, so
// that text can be turned into the IDS.json that logits and generate --ids take, and ids
// (generate's new_tokens, a record) back into text, without loading the model.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/model_config.h"
#include "launch/args.h"
#include "launch/commands.h"
#include "runtime/core/status.h"
#include "runtime/io/tokenizer.h"
#include "runtime/jobs/session.h"

namespace fot::cli {

namespace {

namespace fs = std::filesystem;

// Where the tokenizer comes from: a model directory (its tokenizer.model, checked against
// its config.json's vocab_size) or a tokenizer file.
struct TokenizerSource {
    std::string model, tokenizer;
};

std::unique_ptr<Tokenizer> open_tokenizer(const Args& args, const TokenizerSource& src) {
    FOT_CHECK(args.has("model") != args.has("tokenizer"), args.command(),
              ": give exactly one of --model DIR and --tokenizer FILE");
    if (args.has("tokenizer")) return Tokenizer::load(src.tokenizer);
    std::error_code ec;
    FOT_CHECK(fs::is_directory(src.model, ec), args.command(), ": model directory '", src.model,
              "' does not exist or is not a directory");
    const std::string path = (fs::path(src.model) / "tokenizer.model").string();
    FOT_CHECK(fs::exists(path, ec), "model directory ", src.model,
              " has no tokenizer.model (the published checkpoints ship one, see "
              "docs/models.md; or give one with --tokenizer FILE)");
    auto tok = Tokenizer::load(path);
    const std::string config = (fs::path(src.model) / "config.json").string();
    if (fs::exists(config, ec)) {
        check_tokenizer_vocab(*tok, path, load_model_config(config).value().vocab_size, config);
    }
    return tok;
}

// "-" is standard input.
std::string read_all(const std::string& path, const char* what) {
    if (path == "-") {
        return std::string(std::istreambuf_iterator<char>(std::cin),
                           std::istreambuf_iterator<char>());
    }
    std::ifstream in(path, std::ios::binary);
    FOT_CHECK(in, "cannot read ", what, " ", path);
    std::stringstream ss;
    ss << in.rdbuf();
    FOT_CHECK(!in.bad(), "read error on ", path);
    return ss.str();
}

struct TokenizeCommand {
    TokenizerSource src;
    std::string text, input, format = "json";
    bool no_bos = false;
};

const OptionTable<TokenizeCommand>& tokenize_options() {
    static const OptionTable<TokenizeCommand> table = [] {
        OptionTable<TokenizeCommand> t;
        t.add(flag("model", "DIR", "model directory: uses DIR/tokenizer.model"),
              FOT_FIELD(src.model), text_value());
        t.add(flag("tokenizer", "FILE", "a sentencepiece tokenizer.model (instead of --model)"),
              FOT_FIELD(src.tokenizer), text_value());
        t.add(flag("text", "TEXT", "the text to tokenize"), FOT_FIELD(text), text_value());
        t.add(flag("input", "FILE", "read the text from FILE (- = standard input)"),
              FOT_FIELD(input), text_value());
        t.add(switch_flag("no-bos", "do not prepend the BOS id (generate and logits expect it)"),
              FOT_FIELD(no_bos), boolean_value());
        t.add(flag("format", "json|count",
                   "json: a flat JSON list of ids (IDS.json); count: the number of tokens"),
              FOT_FIELD(format), string_choice({"json", "count"}));
        return t;
    }();
    return table;
}

struct DetokenizeCommand {
    TokenizerSource src;
    std::string ids;
    std::vector<int64_t> id_list;
    std::string format = "text";
};

const OptionTable<DetokenizeCommand>& detokenize_options() {
    static const OptionTable<DetokenizeCommand> table = [] {
        OptionTable<DetokenizeCommand> t;
        t.add(flag("model", "DIR", "model directory: uses DIR/tokenizer.model"),
              FOT_FIELD(src.model), text_value());
        t.add(flag("tokenizer", "FILE", "a sentencepiece tokenizer.model (instead of --model)"),
              FOT_FIELD(src.tokenizer), text_value());
        t.add(flag("ids", "IDS.json", "a flat JSON list of token ids (- = standard input)"),
              FOT_FIELD(ids), text_value());
        t.add(flag("id-list", "LIST", "the ids on the command line, e.g. 450,4996,17354"),
              FOT_FIELD(id_list), list_of(integer<int64_t>(0, INT32_MAX), "450,4996"));
        t.add(flag("format", "text|json",
                   "text: the text and a newline; json: {\"text\", \"ids_without_text\"}"),
              FOT_FIELD(format), string_choice({"text", "json"}));
        return t;
    }();
    return table;
}

}  // namespace

Args tokenize_args() {
    Args args("fotrt tokenize",
              "Turns text into token ids with the model's tokenizer.model (LLaMA conventions:\n"
              "BOS first, no EOS) and prints them as a flat JSON list, the IDS.json that\n"
              "fotrt logits --ids and fotrt generate --ids read. Loads no weights.",
              {"fotrt tokenize --model models/long_llama_3b --text 'The pass key is 42.'",
               "fotrt tokenize --model M --input book.txt > book.json",
               "cat book.txt | fotrt tokenize --tokenizer M/tokenizer.model --input - --format "
               "count"});
    args.add(tokenize_options());
    return args;
}

int cmd_tokenize(const Argv& argv) {
    Args args = tokenize_args();
    if (!args.parse(argv)) return 0;
    TokenizeCommand cmd;
    args.apply(tokenize_options(), cmd);
    FOT_CHECK(args.has("text") != args.has("input"),
              "fotrt tokenize: give exactly one of --text TEXT and --input FILE");
    auto tok = open_tokenizer(args, cmd.src);
    const std::string text = args.has("text") ? cmd.text : read_all(cmd.input, "--input");
    const std::vector<int32_t> ids = tok->encode(text, /*add_bos=*/!cmd.no_bos);
    if (cmd.format == "count") {
        std::cout << ids.size() << std::endl;
    } else {
        std::cout << nlohmann::json(ids).dump() << std::endl;
    }
    return 0;
}

Args detokenize_args() {
    Args args("fotrt detokenize",
              "Turns token ids back into text with the model's tokenizer.model: BOS, EOS and\n"
              "pad are dropped; an id the tokenizer has no piece for (a padded model\n"
              "vocabulary) is shown as <id:N>. Loads no weights.",
              {"fotrt detokenize --model models/long_llama_3b --id-list 1,450,4996",
               "fotrt detokenize --model M --ids book.json",
               "fotrt generate --model M --ids p.json --json | jq -c .new_tokens | fotrt "
               "detokenize --model M --ids -"});
    args.add(detokenize_options());
    return args;
}

int cmd_detokenize(const Argv& argv) {
    Args args = detokenize_args();
    if (!args.parse(argv)) return 0;
    DetokenizeCommand cmd;
    args.apply(detokenize_options(), cmd);
    FOT_CHECK(args.has("ids") != args.has("id-list"),
              "fotrt detokenize: give exactly one of --ids IDS.json and --id-list LIST");
    auto tok = open_tokenizer(args, cmd.src);
    std::vector<int32_t> ids;
    if (args.has("ids")) {
        ids = read_ids_json(cmd.ids == "-" ? "/dev/stdin" : cmd.ids);
    } else {
        for (int64_t id : cmd.id_list) ids.push_back(static_cast<int32_t>(id));
    }
    const std::string text = tok->decode(ids);
    if (cmd.format == "json") {
        std::vector<int32_t> unknown;
        for (int32_t id : ids) {
            if (id >= tok->vocab_size()) unknown.push_back(id);
        }
        nlohmann::json j;
        j["text"] = text;
        j["ids_without_text"] = unknown;
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    } else {
        std::cout << text << std::endl;
    }
    return 0;
}

}  // namespace fot::cli
