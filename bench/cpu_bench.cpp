// CPU benchmark ([F2]): prefill throughput and decode latency of a mid-size random LongLLaMA
// on the CpuBackend, with achieved GFLOP/s from an analytic FLOP count.
//
//   fot_cpu_bench [--tokens 4096,16384] [--decode 8] [--threads N] [--weights f32|bf16]
//                 [--precision exact|fast|both]
//                 [--hidden 1024 --heads 16 --layers 8 --intermediate 2816 --vocab 32000
//                  --window 512 --lcl 256]
// Prefill = one model call over n tokens with logits for every position (as `fotrt logits`);
// decode = tokens fed one at a time afterwards, logits for the last position only.
// --precision (runtime/core/precision.h): default as in a session (fast for bf16 weights,
// exact for f32); fast on f32 weights uses them rounded to bf16, as a session does; `both`
// runs exact then fast. Every line says which mode ran.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "config/run_config.h"
#include "launch/args.h"
#include "parallel/self_communicator.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/core/precision.h"
#include "runtime/core/timer.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/random_weights.h"

namespace {

using fot::ModelConfig;

// FLOPs of a prefill of n tokens (multiply-add = 2), following the reference's windowing.
double prefill_flops(const ModelConfig& c, int64_t n, bool all_logits) {
    const double C = double(c.hidden_size), I = double(c.intermediate_size);
    const double per_token_dense = c.num_hidden_layers * 2.0 * (4 * C * C + 3 * C * I);
    double f = n * per_token_dense + (all_logits ? n : 1) * 2.0 * C * double(c.vocab_size);
    const int64_t W = c.max_position_embeddings, lcl = c.last_context_length;
    const int64_t P = std::max<int64_t>(n - lcl, 0);
    int64_t mem = 0;
    auto window = [&](int64_t T) {
        // causal local attention (QK^T and PV) in every layer, memory attention in memory layers
        f += c.num_hidden_layers * 4.0 * C * (double(T) * (T + 1) / 2);
        f += double(c.mem_layers.size()) * 4.0 * C * double(T) * double(mem);
    };
    for (int64_t s = 0; s < P; s += W) {
        const int64_t T = std::min(W, P - s);
        window(T);
        mem += T;
    }
    window(n - P);
    return f;
}

// The benchmark's options; the defaults here are the ones --help shows.
struct BenchOptions {
    std::vector<int64_t> tokens = {4096, 16384};
    int64_t decode = 8;
    int64_t threads = 0;
    fot::DType weights = fot::DType::kF32;
    std::string precision;  // exact | fast | both; "" = as a session decides
    int64_t hidden = 1024, heads = 16, layers = 8, intermediate = 2816, vocab = 32000;
    int64_t window = 512, lcl = 256;
};

const fot::OptionTable<BenchOptions>& bench_options() {
    using namespace fot;
    static const OptionTable<BenchOptions> table = [] {
        OptionTable<BenchOptions> t;
        t.add(flag("tokens", "N,N", "prompt lengths"), FOT_FIELD(tokens),
              list_of(count(1), "4k,16k"));
        t.add(flag("decode", "N", "tokens decoded after each prefill"), FOT_FIELD(decode),
              integer<int64_t>(0));
        t.add(flag("threads", "N", "CPU threads (0 = all)"), FOT_FIELD(threads),
              integer<int64_t>(0));
        t.add(flag("weights", "DTYPE", "weight dtype f32|bf16"), FOT_FIELD(weights),
              choice<DType>(
                  "f32 or bf16",
                  [](const std::string& s, DType* out) { return parse_compute_dtype(s, out); },
                  [](const DType& d) { return std::string(dtype_name(d)); }));
        t.add(flag("precision", "exact|fast|both", "arithmetic (both: one run of each)")
                  .default_is("fast for bf16 weights, exact for f32"),
              FOT_FIELD(precision), string_choice({"exact", "fast", "both"}));
        t.add(flag("hidden", "N", "hidden size"), FOT_FIELD(hidden), integer<int64_t>(1));
        t.add(flag("heads", "N", "attention heads"), FOT_FIELD(heads), integer<int64_t>(1));
        t.add(flag("layers", "N", "layers"), FOT_FIELD(layers), integer<int64_t>(1));
        t.add(flag("intermediate", "N", "MLP size"), FOT_FIELD(intermediate), integer<int64_t>(1));
        t.add(flag("vocab", "N", "vocabulary"), FOT_FIELD(vocab), integer<int64_t>(1));
        t.add(flag("window", "N", "W = max_position_embeddings"), FOT_FIELD(window),
              integer<int64_t>(1));
        t.add(flag("lcl", "N", "last_context_length"), FOT_FIELD(lcl), integer<int64_t>(1));
        return t;
    }();
    return table;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace fot;
    try {
        cli::Args args("fot_cpu_bench",
                       "Prefill and decode timing of a random LongLLaMA on the CPU.",
                       {"fot_cpu_bench --tokens 4k,16k --threads 2",
                        "fot_cpu_bench --tokens 4k --weights bf16 --precision both"});
        args.add(bench_options());
        if (!args.parse(std::vector<std::string>(argv + 1, argv + argc))) return 0;
        BenchOptions b;
        args.apply(bench_options(), b);

        ModelConfig c;
        c.hidden_size = b.hidden;
        c.num_attention_heads = b.heads;
        c.num_hidden_layers = b.layers;
        c.intermediate_size = b.intermediate;
        c.vocab_size = b.vocab;
        c.max_position_embeddings = b.window;
        c.last_context_length = b.lcl;
        c.mem_layers = {2, 5};
        c.mem_layers.erase(std::remove_if(c.mem_layers.begin(), c.mem_layers.end(),
                                          [&](int64_t l) { return l >= c.num_hidden_layers; }),
                           c.mem_layers.end());
        c.mem_dtype = DType::kBF16;
        validate_model_config(c, "benchmark").check();
        const DType wdt = b.weights;
        std::vector<Precision> modes;
        if (b.precision.empty()) {
            modes = {wdt == DType::kF32 ? Precision::kExact : Precision::kFast};
        } else if (b.precision == "both") {
            modes = {Precision::kExact, Precision::kFast};
        } else {
            Precision p;
            FOT_ASSERT(parse_precision(b.precision, &p));  // the row only takes exact|fast|both
            modes = {p};
        }
        const int threads = static_cast<int>(b.threads);
        const std::vector<int64_t>& lengths = b.tokens;
        const int64_t decode = b.decode;

        CpuBackend backend(threads);
        parallel::SelfCommunicator self;
        for (Precision mode : modes) {
            backend.set_precision(mode);
            // As a session: fast mode multiplies bf16 weights (f32 ones are rounded at load).
            const DType mode_wdt =
                mode == Precision::kFast && wdt == DType::kF32 ? DType::kBF16 : wdt;
            ModelWeights w = random_model_weights(c, backend, mode_wdt, 1);
            const double weight_gb = w.bytes / 1e9;
            ModelOptions mo;
            mo.mem_dtype = c.mem_dtype;
            mo.last_context_length = c.last_context_length;
            mo.precision = mode;
            LongLlama model(c, std::move(w), backend, self, self, mo);
            Sequence seq = model.new_sequence();

            std::printf(
                "fot_cpu_bench: precision %s, hidden %lld, %lld heads, %lld layers, intermediate "
                "%lld, vocab %lld, W %lld, lcl %lld, mem_layers [2,5], weights %s (%.2f GB), "
                "memory "
                "bf16, threads %d\n",
                precision_name(mode), (long long)c.hidden_size, (long long)c.num_attention_heads,
                (long long)c.num_hidden_layers, (long long)c.intermediate_size,
                (long long)c.vocab_size, (long long)c.max_position_embeddings,
                (long long)c.last_context_length, dtype_name(mode_wdt), weight_gb, threads);
            std::printf("%9s %8s %10s %10s %10s %14s %12s\n", "precision", "tokens", "prefill_s",
                        "tokens/s", "GFLOP/s", "decode_ms/tok", "memory_MiB");
            std::mt19937 rng(5);
            std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(c.vocab_size - 1));
            for (int64_t n : lengths) {
                std::vector<int32_t> ids(n);
                for (auto& t : ids) t = tok(rng);
                seq.reset();
                ForwardOptions all;
                all.logits = LogitsRows::kAll;
                all.on_logits = [](int64_t, TensorView) {};
                Timer t;
                model.forward(seq, ids, all);
                const double prefill = t.seconds();
                ForwardOptions last;
                last.logits = LogitsRows::kLast;
                last.on_logits = [](int64_t, TensorView) {};
                t.reset();
                for (int64_t i = 0; i < decode; ++i) model.forward(seq, {tok(rng)}, last);
                const double dec = decode > 0 ? t.seconds() / decode : 0.0;
                std::printf("%9s %8lld %10.2f %10.0f %10.1f %14.1f %12.1f\n", precision_name(mode),
                            (long long)n, prefill, n / prefill,
                            prefill_flops(c, n, true) / prefill / 1e9, dec * 1e3,
                            seq.memory().used_bytes() / 1048576.0);
                std::fflush(stdout);
            }
        }
        return 0;
    } catch (const std::exception& e) {
        // Usage errors from Args already name the program: do not say it twice.
        std::string msg = e.what();
        const std::string self = "fot_cpu_bench: ";
        if (msg.rfind(self, 0) == 0) msg = msg.substr(self.size());
        std::fprintf(stderr, "fot_cpu_bench: error: %s\n", msg.c_str());
        return 1;
    }
}
