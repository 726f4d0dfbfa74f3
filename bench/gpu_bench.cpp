// fot_gpu_bench: prefill and decode timings of a LongLLaMA-shaped model with random weights on
// one GPU (CudaBackend), against the device's measured ceilings (bench/gpu_bench.sh runs it).
//
// Default shape: LongLLaMA 3B (hidden 3200, 32 heads, 26 layers, intermediate 8640, vocab
// 32000, mem_layers [6,12,18], W 2048, lcl 1024), bf16 weights and bf16 memory. For each
// prefill length: one forward over n random tokens (logits of the last row only), then
// --decode-steps greedy steps. FLOP and byte counts follow docs/architecture.md §8 (formulas
// below); the ceilings are measured here: a large bf16 GEMM through CudaBackend::matmul and a
// large device-to-device copy (bytes read + written). Timings use the host clock around
// CudaBackend::synchronize(), after a warm-up forward. Per-phase tables (GEMMs, local
// attention, memory attention, top-k, collectives, other) come from CUDA events around each
// backend op (CudaBackend::set_profiling) with analytic FLOP/byte counts per op, each followed
// by the same interval per op (what "other" is made of); the prefill
// is timed with profiling on (its ops are milliseconds long), decode ms/token without it
// (so with step graphs, unless FOT_CUDA_GRAPH=0) and its phase table from a second, profiled
// set of steps (ordinary launches: profiling turns step graphs off).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "config/run_config.h"
#include "parallel/self_communicator.h"
#include "runtime/backend/cuda_backend.h"
#include "runtime/core/status.h"
#include "runtime/core/timer.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/weights.h"

namespace fot {
namespace {

struct Options {
    std::vector<int64_t> lengths = {16384, 65536, 131072};
    int64_t decode_steps = 32;
    int device = 0;
    int64_t hidden = 3200, heads = 32, layers = 26, intermediate = 8640, vocab = 32000;
    int64_t window = 2048, lcl = 1024;
    std::vector<int64_t> mem_layers = {6, 12, 18};
    DType weights = DType::kBF16, mem = DType::kBF16;
    bool ceilings = true;
    Precision precision = Precision::kFast;
    Retrieval retrieval = Retrieval::kDense;
    int64_t k = 128;
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "fot_gpu_bench: %s\n"
                 "usage: fot_gpu_bench [--lengths 16k,64k,128k] [--decode-steps N] [--device N]\n"
                 "  [--hidden N] [--heads N] [--layers N] [--intermediate N] [--vocab N]\n"
                 "  [--window N] [--lcl N] [--mem-layers 6,12,18] [--weights bf16|f16|f32]\n"
                 "  [--mem-dtype bf16|f16|f32] [--precision fast|exact] [--retrieval dense|topk]\n"
                 "  [--k N] [--no-ceilings]\n"
                 "example: fot_gpu_bench --lengths 16k,128k --precision fast --decode-steps 32\n",
                 why.c_str());
    std::exit(2);
}

int64_t parse_count(const std::string& opt, const std::string& s) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    int64_t mult = 1;
    if (end && (*end == 'k' || *end == 'K')) {
        mult = 1024;
        ++end;
    }
    if (s.empty() || !end || *end != '\0' || v < 0) usage(opt + ": '" + s + "' is not a count");
    return v * mult;
}

std::vector<int64_t> parse_list(const std::string& opt, const std::string& s) {
    std::vector<int64_t> out;
    size_t b = 0;
    while (b <= s.size()) {
        const size_t e = s.find(',', b);
        const std::string part = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
        if (!part.empty()) out.push_back(parse_count(opt, part));
        if (e == std::string::npos) break;
        b = e + 1;
    }
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) usage(a + " needs a value");
            return argv[++i];
        };
        auto dtype = [&](const std::string& s) {
            DType t;
            if (!parse_dtype(s, &t) || (t != DType::kF32 && t != DType::kBF16 && t != DType::kF16))
                usage(a + ": '" + s + "' is not f32, bf16 or f16");
            return t;
        };
        if (a == "--lengths")
            o.lengths = parse_list(a, val());
        else if (a == "--decode-steps")
            o.decode_steps = parse_count(a, val());
        else if (a == "--device")
            o.device = static_cast<int>(parse_count(a, val()));
        else if (a == "--hidden")
            o.hidden = parse_count(a, val());
        else if (a == "--heads")
            o.heads = parse_count(a, val());
        else if (a == "--layers")
            o.layers = parse_count(a, val());
        else if (a == "--intermediate")
            o.intermediate = parse_count(a, val());
        else if (a == "--vocab")
            o.vocab = parse_count(a, val());
        else if (a == "--window")
            o.window = parse_count(a, val());
        else if (a == "--lcl")
            o.lcl = parse_count(a, val());
        else if (a == "--mem-layers")
            o.mem_layers = parse_list(a, val());
        else if (a == "--weights")
            o.weights = dtype(val());
        else if (a == "--mem-dtype")
            o.mem = dtype(val());
        else if (a == "--precision") {
            const std::string v = val();
            if (!parse_precision(v, &o.precision)) usage(a + ": '" + v + "' is not exact or fast");
        } else if (a == "--retrieval") {
            const std::string v = val();
            if (!parse_retrieval(v, &o.retrieval)) usage(a + ": '" + v + "' is not dense or topk");
        } else if (a == "--k")
            o.k = parse_count(a, val());
        else if (a == "--no-ceilings")
            o.ceilings = false;
        else if (a == "--help" || a == "-h")
            usage("help");
        else
            usage("unknown option " + a);
    }
    if (o.lengths.empty()) usage("--lengths is empty");
    return o;
}

Buffer random_buffer(CudaBackend& b, DType t, Shape s, uint64_t seed, float scale) {
    Buffer buf = b.alloc(t, std::move(s));
    b.fill_uniform(buf.view(), seed, scale);
    return buf;
}

Buffer ones(CudaBackend& b, int64_t n) {
    Buffer buf = b.alloc(DType::kF32, {n});
    std::vector<float> host(static_cast<size_t>(n), 1.0f);
    b.upload(buf.view(), host.data(), host.size() * sizeof(float));
    return buf;
}

// `parts` weights of one shape back to back in one allocation, as load_model_weights lays out
// q|k|v and gate|up (one batched GEMM each in prefill); seeds in order as random_buffer's.
std::vector<Buffer> random_group(CudaBackend& b, DType t, int64_t parts, int64_t rows, int64_t cols,
                                 uint64_t* seed, float scale) {
    std::vector<Buffer> out = split_rows(b.alloc(t, {parts * rows, cols}), parts);
    for (const Buffer& part : out) b.fill_uniform(part.view(), (*seed)++, scale);
    return out;
}

ModelWeights random_weights(CudaBackend& b, const ModelConfig& c, DType t) {
    const int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
    const float s = 0.02f;
    uint64_t seed = 1;
    ModelWeights w;
    w.heads = c.num_attention_heads;
    w.intermediate = I;
    w.vocab_rows = V;
    w.vocab_begin = 0;
    w.embed = random_buffer(b, t, {V, C}, seed++, 1.0f);
    w.layers.resize(c.num_hidden_layers);
    for (auto& L : w.layers) {
        std::vector<Buffer> qkv = random_group(b, t, 3, C, C, &seed, s);
        L.wq = std::move(qkv[0]);
        L.wk = std::move(qkv[1]);
        L.wv = std::move(qkv[2]);
        L.wo = random_buffer(b, t, {C, C}, seed++, s);
        std::vector<Buffer> gate_up = random_group(b, t, 2, I, C, &seed, s);
        L.w_gate = std::move(gate_up[0]);
        L.w_up = std::move(gate_up[1]);
        L.w_down = random_buffer(b, t, {C, I}, seed++, s);
        L.ln_in = ones(b, C);
        L.ln_post = ones(b, C);
    }
    w.norm = ones(b, C);
    w.lm_head = random_buffer(b, t, {V, C}, seed++, s);
    w.bytes = static_cast<int64_t>(dtype_size(t)) *
              (2 * V * C + c.num_hidden_layers * (4 * C * C + 3 * C * I));
    // The decode GEMV reads weights before its programmatic-launch wait (kernels/cuda/pdl.cuh:
    // weights are never written while the model runs); these were just written by kernels.
    b.synchronize();
    return w;
}

// FLOPs of one n-token forward from an empty state, following LongLlama's windowing:
// dense 2 x params per token; attention 4 x C per (query, key) pair: causal within each
// window, plus all earlier windows' memory in memory layers; lm_head for one row.
double prefill_flops(const ModelConfig& c, int64_t lcl, int64_t n) {
    const double C = static_cast<double>(c.hidden_size),
                 I = static_cast<double>(c.intermediate_size);
    const double L = static_cast<double>(c.num_hidden_layers);
    const double ML = static_cast<double>(c.mem_layers.size());
    const int64_t W = c.max_position_embeddings, P = std::max<int64_t>(n - lcl, 0);
    double f = 2.0 * static_cast<double>(n) * L * (4 * C * C + 3 * C * I) +
               2.0 * C * static_cast<double>(c.vocab_size);
    int64_t mem = 0;
    auto window = [&](int64_t T) {
        const double t = static_cast<double>(T);
        f += L * 4 * C * t * (t + 1) / 2;
        f += ML * 4 * C * t * static_cast<double>(mem);
    };
    for (int64_t s = 0; s < P; s += W) {
        const int64_t T = std::min(W, P - s);
        window(T);
        mem += T;
    }
    window(n - P);
    return f;
}

// One table row per phase: time, share, achieved TFLOP/s and GB/s (analytic counts / time).
void print_phases(const char* what, const PhaseStats& ph, double wall_s, double steps) {
    double total = 0;
    for (const PhaseStat& p : ph) total += p.seconds;
    std::printf("    %s: %.3f s wall, %.3f s in profiled ops%s\n", what, wall_s / steps,
                total / steps, steps > 1 ? " (per step)" : "");
    std::printf("    | phase | calls | s | %% | TFLOP/s | GB/s |\n    |---|---|---|---|---|---|\n");
    for (size_t i = 0; i < ph.size(); ++i) {
        const PhaseStat& p = ph[i];
        if (p.calls == 0) continue;
        std::printf("    | %s | %lld | %.4f | %.1f | %.1f | %.0f |\n",
                    phase_name(static_cast<Phase>(i)), static_cast<long long>(p.calls),
                    p.seconds / steps, total > 0 ? 100.0 * p.seconds / total : 0.0,
                    p.seconds > 0 ? p.flops / p.seconds / 1e12 : 0.0,
                    p.seconds > 0 ? p.bytes / p.seconds / 1e9 : 0.0);
    }
    std::printf("    | collectives | 0 | 0 | 0 | - | - |  (one GPU: no tp/mp communication)\n");
    std::fflush(stdout);
}

// The same interval per backend op, most time first: what each phase, "other" above all, is
// made of.
void print_ops(const std::vector<OpStat>& ops, double steps) {
    double total = 0;
    for (const OpStat& o : ops) total += o.stat.seconds;
    std::printf("    | op | phase | calls | s | %% | GB/s |\n    |---|---|---|---|---|---|\n");
    for (const OpStat& o : ops) {
        const PhaseStat& p = o.stat;
        std::printf("    | %s | %s | %lld | %.4f | %.1f | %.0f |\n", o.op.c_str(),
                    phase_name(o.phase), static_cast<long long>(p.calls), p.seconds / steps,
                    total > 0 ? 100.0 * p.seconds / total : 0.0,
                    p.seconds > 0 ? p.bytes / p.seconds / 1e9 : 0.0);
    }
    std::fflush(stdout);
}

struct Ceilings {
    double tflops = 0, gbps = 0;
};

Ceilings measure_ceilings(CudaBackend& b) {
    Ceilings c;
    {
        const int64_t M = 8192;
        Buffer x = random_buffer(b, DType::kF32, {M, M}, 101, 1.0f);
        Buffer w = random_buffer(b, DType::kBF16, {M, M}, 102, 1.0f);
        Buffer o = b.alloc(DType::kF32, {M, M});
        for (int i = 0; i < 3; ++i) b.matmul(o.view(), x.view(), w.view());
        b.synchronize();
        const int reps = 10;
        Timer t;
        for (int i = 0; i < reps; ++i) b.matmul(o.view(), x.view(), w.view());
        b.synchronize();
        c.tflops = 2.0 * M * M * M * reps / t.seconds() / 1e12;
    }
    {
        const int64_t rows = 1 << 20, width = 512;  // 2 GiB of f32
        Buffer src = random_buffer(b, DType::kF32, {rows, width}, 103, 1.0f);
        Buffer dst = b.alloc(DType::kF32, {rows, width});
        b.copy_rows(dst.view(), 0, src.view(), rows);
        b.synchronize();
        const int reps = 5;
        Timer t;
        for (int i = 0; i < reps; ++i) b.copy_rows(dst.view(), 0, src.view(), rows);
        b.synchronize();
        c.gbps = 2.0 * static_cast<double>(src.nbytes()) * reps / t.seconds() / 1e9;
    }
    return c;
}

int run(const Options& o) {
    ModelConfig mc;
    mc.hidden_size = o.hidden;
    mc.num_attention_heads = o.heads;
    mc.num_hidden_layers = o.layers;
    mc.intermediate_size = o.intermediate;
    mc.vocab_size = o.vocab;
    mc.max_position_embeddings = o.window;
    mc.last_context_length = o.lcl;
    mc.mem_layers = o.mem_layers;
    mc.mem_dtype = o.mem;
    validate_model_config(mc, "fot_gpu_bench options").check();

    CudaBackend backend(o.device);
    backend.set_precision(o.precision);
    parallel::SelfCommunicator tp(backend.device()), mp(backend.device());
    ModelOptions mo;
    mo.mem_dtype = o.mem;
    mo.last_context_length = o.lcl;
    mo.precision = o.precision;
    mo.retrieval = o.retrieval;
    mo.k = o.k;
    // fast runs bf16 GEMM operands: f32 weights would be converted at load (weights.cpp).
    ModelWeights weights = random_weights(
        backend, mc,
        o.precision == Precision::kFast && o.weights == DType::kF32 ? DType::kBF16 : o.weights);
    const double weight_bytes = static_cast<double>(weights.bytes);
    LongLlama model(mc, std::move(weights), backend, tp, mp, mo);
    Sequence seq = model.new_sequence();
    std::printf(
        "fot_gpu_bench: hidden %lld, %lld heads x %lld, %lld layers, intermediate %lld, "
        "vocab %lld, mem_layers %zu, W %lld, lcl %lld, %s weights (%.2f GB), %s memory, "
        "%d SMs, precision %s, retrieval %s (k %lld)\n",
        (long long)o.hidden, (long long)o.heads, (long long)mc.head_dim(), (long long)o.layers,
        (long long)o.intermediate, (long long)o.vocab, o.mem_layers.size(), (long long)o.window,
        (long long)o.lcl, dtype_name(o.weights), weight_bytes / 1e9, dtype_name(o.mem),
        backend.sm_count(), precision_name(o.precision), retrieval_name(o.retrieval),
        (long long)o.k);

    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(o.vocab - 1));
    std::vector<float> last(static_cast<size_t>(o.vocab));
    ForwardOptions fo;
    fo.logits = LogitsRows::kLast;
    fo.on_logits = [&](int64_t, TensorView v) {
        backend.download(last.data(), v, last.size() * sizeof(float));
    };
    auto forward = [&](const std::vector<int32_t>& ids) {
        model.forward(seq, ids, fo);
        backend.synchronize();
    };

    // Warm-up: cuBLAS heuristics, scratch growth, first-launch costs.
    {
        std::vector<int32_t> ids(static_cast<size_t>(std::min<int64_t>(o.window + o.lcl, 4096)));
        for (auto& t : ids) t = tok(rng);
        seq.reset();
        forward(ids);
        forward({ids[0]});
    }

    struct Row {
        int64_t n;
        double prefill_s, prefill_tflops, decode_ms, decode_gbps, decode_tflops;
        int64_t mem_tokens;
    };
    std::vector<Row> rows;
    const double mem_bytes_per_token = static_cast<double>(mc.memory_bytes_per_token(o.mem));
    for (int64_t n : o.lengths) {
        std::vector<int32_t> ids(static_cast<size_t>(n));
        for (auto& t : ids) t = tok(rng);
        seq.reset();
        backend.set_profiling(true);
        Timer t;
        forward(ids);
        const double ps = t.seconds();
        const PhaseStats prefill_phases = backend.take_phase_stats();
        const std::vector<OpStat> prefill_ops = backend.op_stats();
        backend.set_profiling(false);
        const double pf = prefill_flops(mc, o.lcl, n);
        // Decode: greedy steps from the prefill's last logits.
        double bytes = 0, flops = 0;
        const int64_t graphs_before = backend.graph_launches();
        Timer d;
        for (int64_t s = 0; s < o.decode_steps; ++s) {
            const int32_t next =
                static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
            const double local = static_cast<double>(seq.local_tokens(0) + 1);
            const double mem = static_cast<double>(seq.memory_tokens());
            // Bytes: every weight once, the memory keys/values once, the local cache once (f32
            // in exact, bf16 in fast).
            const double local_elem = o.precision == Precision::kFast ? 2.0 : 4.0;
            bytes += weight_bytes + mem * mem_bytes_per_token +
                     local * 2.0 * static_cast<double>(o.hidden) * local_elem *
                         static_cast<double>(o.layers);
            flops += 2.0 * weight_bytes / static_cast<double>(dtype_size(o.weights)) +
                     4.0 * static_cast<double>(o.hidden) *
                         (local * static_cast<double>(o.layers) +
                          mem * static_cast<double>(o.mem_layers.size()));
            forward({next});
        }
        const double ds = d.seconds();
        const double steps = static_cast<double>(std::max<int64_t>(o.decode_steps, 1));
        // Step graphs (CudaBackend::graph_begin): 0 when FOT_CUDA_GRAPH=0 or a capture failed.
        const double graphs_per_step =
            static_cast<double>(backend.graph_launches() - graphs_before) / steps;
        // A few more steps with profiling on, for the decode phase table.
        const int64_t prof_steps = std::min<int64_t>(8, std::max<int64_t>(o.decode_steps, 1));
        backend.set_profiling(true);
        Timer dp;
        for (int64_t s = 0; s < prof_steps; ++s) {
            forward(
                {static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin())});
        }
        const double dps = dp.seconds();
        const PhaseStats decode_phases = backend.take_phase_stats();
        const std::vector<OpStat> decode_ops = backend.op_stats();
        backend.set_profiling(false);
        rows.push_back({n, ps, pf / ps / 1e12, 1e3 * ds / steps, bytes / ds / 1e9,
                        flops / ds / 1e12, seq.memory_tokens()});
        std::printf(
            "  n=%-7lld prefill %8.3f s  %7.1f TFLOP/s | decode %8.3f ms/token  "
            "%7.1f GB/s (memory %lld tokens; %.1f graph launches per token)\n",
            (long long)n, ps, rows.back().prefill_tflops, rows.back().decode_ms,
            rows.back().decode_gbps, (long long)seq.memory_tokens(), graphs_per_step);
        print_phases("prefill", prefill_phases, ps, 1);
        print_ops(prefill_ops, 1);
        print_phases("decode (profiled steps)", decode_phases, dps,
                     static_cast<double>(prof_steps));
        print_ops(decode_ops, static_cast<double>(prof_steps));
    }
    const double peak_mem = static_cast<double>(backend.peak_allocated_bytes());

    Ceilings c;
    if (o.ceilings) {
        c = measure_ceilings(backend);
        std::printf(
            "\nceilings measured on this device: bf16 GEMM %.0f TFLOP/s (8192^3 through "
            "CudaBackend::matmul), device copy %.0f GB/s (read + write)\n",
            c.tflops, c.gbps);
    } else {
        std::printf("\nceilings not measured (--no-ceilings): no %% of peak below\n");
    }
    std::printf("peak device memory held by the backend during the model runs: %.2f GiB\n\n",
                peak_mem / (1ull << 30));
    std::printf(
        "| tokens | prefill s | TFLOP/s | %% GEMM peak | decode ms/token | GB/s | %% copy "
        "peak | memory tokens |\n|---|---|---|---|---|---|---|---|\n");
    const auto percent = [](double v, double peak) {
        char buf[32];
        if (peak > 0) {
            std::snprintf(buf, sizeof(buf), "%.1f", 100.0 * v / peak);
        } else {
            std::snprintf(buf, sizeof(buf), "-");
        }
        return std::string(buf);
    };
    for (const Row& r : rows) {
        std::printf("| %lld | %.3f | %.1f | %s | %.3f | %.0f | %s | %lld |\n", (long long)r.n,
                    r.prefill_s, r.prefill_tflops, percent(r.prefill_tflops, c.tflops).c_str(),
                    r.decode_ms, r.decode_gbps, percent(r.decode_gbps, c.gbps).c_str(),
                    (long long)r.mem_tokens);
    }
    return 0;
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) {
    try {
        return fot::run(fot::parse(argc, argv));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fot_gpu_bench: error: %s\n", e.what());
        return 1;
    }
}
