#include "runtime/jobs/sweep_job.h"

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "parallel/device_select.h"
#include "parallel/mpi_session.h"
#include "parallel/nccl_communicator.h"
#include "parallel/self_communicator.h"
#include "parallel/world.h"
#include "runtime/core/cpu_threads.h"
#include "runtime/core/host_memory.h"
#include "runtime/core/logging.h"
#include "runtime/core/progress.h"
#include "runtime/core/timer.h"
#include "runtime/jobs/perf_model.h"
#include "runtime/jobs/phase_timer.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/random_weights.h"

namespace fot {

namespace {

using nlohmann::json;

struct Point {
    std::string backend;
    Precision precision = Precision::kExact;
    SweepLayout layout;
    Retrieval retrieval = Retrieval::kDense;
    int64_t k = 0;  // 0 for dense
    int64_t memory = 0, query = 0;
};

// ---- peak memory of this process (Linux) --------------------------------------------------

// Resets the kernel's peak-RSS mark (VmHWM) so that each point reports its own peak.
void reset_peak_rss() {
    if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
        std::fputs("5", f);
        std::fclose(f);
    }
}
double peak_rss_bytes() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) * 1024.0;
    }
    return 0;
}

// ---- one model instance per (backend, precision, layout, retrieval, k) ---------------------

struct Rig {
    PhaseCounts counts;
    BenchClock clock = BenchClock::kWall;
    parallel::World world;
    parallel::GroupCommunicators comms, device_comms;
    std::unique_ptr<Backend> backend;
    std::unique_ptr<TimedBackend> timed;
    std::unique_ptr<TimedCommunicator> tp, mp;
    std::unique_ptr<LongLlama> model;
    double weight_bytes = 0;
};

DType multiplied_weights(const SweepConfig& cfg, Precision p) {
    // As a session: fast mode multiplies bf16 weights (f32 ones are rounded at load).
    return p == Precision::kFast ? DType::kBF16 : cfg.weights;
}

std::unique_ptr<Rig> make_rig(const SweepConfig& cfg, parallel::Communicator& world_comm,
                              const Point& pt) {
    auto r = std::make_unique<Rig>();
    parallel::NodeInfo node = parallel::node_info();
    if (world_comm.size() == 1 || node.local_size() > world_comm.size()) {
        node.ranks = {world_comm.rank()};
        node.visible = {node.visible.empty() ? "" : node.visible[node.local_rank]};
        node.local_rank = 0;
    }
    r->world = parallel::World(world_comm.size(), world_comm.rank(), pt.layout.tp, pt.layout.mp,
                               node.local_rank);
    r->comms = parallel::make_group_communicators(r->world, world_comm);
    const bool nccl = pt.backend == "cuda" && r->world.group_size() > 1;
    int device = r->world.device_index();
    if (pt.backend == "cuda") {
        const parallel::DeviceChoice choice =
            parallel::select_cuda_device(node, backend_device_count("cuda"), nccl);
        device = choice.device;
    }
    const int threads =
        cfg.threads > 0
            ? cfg.threads
            : default_thread_count(allowed_cpu_count(), hardware_cpu_count(), node.local_size());
    r->backend = make_backend(pt.backend, device, threads);
    r->backend->set_precision(pt.precision);
    parallel::Communicator* tp = r->comms.tp.get();
    parallel::Communicator* mp = r->comms.mp.get();
    if (r->backend->device().kind != DeviceKind::kCpu && nccl) {
        auto device_comm =
            [&](parallel::Communicator& host) -> std::unique_ptr<parallel::Communicator> {
            if (host.size() == 1) {
                return std::make_unique<parallel::SelfCommunicator>(r->backend->device());
            }
            auto c = parallel::make_nccl_communicator(host, device);
            c->set_group_name(host.group_name());
            c->set_timeout(host.timeout());
            return c;
        };
        r->device_comms.tp = device_comm(*r->comms.tp);
        r->device_comms.mp = device_comm(*r->comms.mp);
        tp = r->device_comms.tp.get();
        mp = r->device_comms.mp.get();
    }
    Backend* inner = r->backend.get();
    std::function<void()> sync;
    if (inner->device().kind != DeviceKind::kCpu) sync = [inner] { inner->synchronize(); };
    r->clock = cfg.cpu_clock ? BenchClock::kCpu : BenchClock::kWall;
    r->timed = std::make_unique<TimedBackend>(*inner, r->counts, r->clock);
    r->tp = std::make_unique<TimedCommunicator>(*tp, r->counts, BenchPhase::kTpAllreduce, sync,
                                                r->clock);
    r->mp = std::make_unique<TimedCommunicator>(*mp, r->counts, BenchPhase::kMpAllgather, sync,
                                                r->clock);

    const ModelConfig& c = cfg.model;
    ModelWeights w = random_model_weights(c, *inner, multiplied_weights(cfg, pt.precision), 1,
                                          r->world.tp_rank(), r->world.tp());
    r->weight_bytes = double(w.bytes);
    ModelOptions mo;
    mo.mem_dtype = c.mem_dtype;
    // The whole measured call (at most W tokens) runs through the local cache.
    mo.last_context_length = c.max_position_embeddings;
    mo.retrieval = pt.retrieval;
    mo.k = pt.k > 0 ? pt.k : 1;
    mo.precision = pt.precision;
    mo.world_rank = r->world.rank();
    r->model = std::make_unique<LongLlama>(c, std::move(w), *r->timed, *r->tp, *r->mp, mo);
    return r;
}

// ---- measuring one point ---------------------------------------------------------------------

// The doubles one rank contributes per point (gathered to every rank).
constexpr int kRankFields = 4 * kBenchPhases + 8;

struct RankRecord {
    PhaseCounts counts;
    double total = 0, peak_rss = 0, held_bytes = 0;
    int rank = 0, tp_rank = 0, mp_rank = 0, dp_rank = 0;
};

std::vector<double> pack(const RankRecord& r) {
    std::vector<double> v;
    for (const PhaseCount& c : r.counts.p) {
        v.insert(v.end(), {double(c.calls), c.seconds, c.flops, c.bytes});
    }
    v.insert(v.end(), {r.total, r.peak_rss, r.held_bytes, double(r.rank), double(r.tp_rank),
                       double(r.mp_rank), double(r.dp_rank), 0.0});
    return v;
}
RankRecord unpack(const double* v) {
    RankRecord r;
    for (int i = 0; i < kBenchPhases; ++i, v += 4) {
        r.counts.p[i] = {int64_t(v[0]), v[1], v[2], v[3]};
    }
    r.total = v[0];
    r.peak_rss = v[1];
    r.held_bytes = v[2];
    r.rank = int(v[3]);
    r.tp_rank = int(v[4]);
    r.mp_rank = int(v[5]);
    r.dp_rank = int(v[6]);
    return r;
}

// "cpu exact tp 1 mp 2 dp 2 topk k 32 M 4096 Q 128"
std::string point_label(const Point& p) {
    char label[160];
    std::snprintf(label, sizeof(label), "%s %s tp %d mp %d dp %d %s%s M %lld Q %lld",
                  p.backend.c_str(), precision_name(p.precision), p.layout.tp, p.layout.mp,
                  p.layout.dp, retrieval_name(p.retrieval),
                  p.k > 0 ? (" k " + std::to_string(p.k)).c_str() : "", (long long)p.memory,
                  (long long)p.query);
    return label;
}

// The median of v, or its minimum with `use_min` (SweepConfig::use_min).
double pick(std::vector<double> v, bool use_min) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return use_min ? v.front() : v[v.size() / 2];
}

// Runs `repeats` timed calls (after one untimed warm-up) of `query` tokens over a memory of
// `memory` tokens and returns every rank's record of the median call (by its total time), or
// of the fastest with `use_min`. `phase_stats` (optional): this rank's per-phase medians
// (minima with `use_min`) over the calls.
std::vector<RankRecord> measure(Rig& rig, parallel::Communicator& world, int64_t memory,
                                int64_t query, int repeats, bool use_min,
                                PhaseCounts* phase_stats = nullptr) {
    LongLlama& model = *rig.model;
    Sequence filled = model.new_sequence(0);
    model.fill_memory(filled, memory, 7);
    Sequence seq = model.new_sequence(0);
    std::mt19937 rng(11);
    std::uniform_int_distribution<int32_t> tok(0, int32_t(model.config().vocab_size - 1));
    std::vector<int32_t> ids(static_cast<size_t>(query));
    for (auto& t : ids) t = tok(rng);
    ForwardOptions fo;
    fo.logits = LogitsRows::kLast;
    fo.on_logits = [](int64_t, TensorView) {};

    reset_peak_rss();
    std::vector<std::pair<double, PhaseCounts>> runs;
    for (int i = 0; i <= repeats; ++i) {
        seq.copy_from(filled);
        rig.backend->synchronize();
        world.barrier();
        rig.counts = PhaseCounts{};
        const double t0 = bench_clock_seconds(rig.clock);
        model.forward(seq, ids, fo);
        rig.backend->synchronize();
        const double total = bench_clock_seconds(rig.clock) - t0;
        if (i > 0) runs.emplace_back(total, rig.counts);
    }
    if (phase_stats) {
        // Each phase's own statistic over the calls (calibration: robust to one slow op).
        for (int ph = 0; ph < kBenchPhases; ++ph) {
            std::vector<double> v;
            for (const auto& r : runs) v.push_back(r.second.p[ph].seconds);
            phase_stats->p[ph] = runs[0].second.p[ph];
            phase_stats->p[ph].seconds = pick(v, use_min);
        }
    }
    std::sort(runs.begin(), runs.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    const size_t chosen = use_min ? 0 : runs.size() / 2;
    RankRecord mine;
    mine.total = runs[chosen].first;
    mine.counts = runs[chosen].second;
    mine.peak_rss = peak_rss_bytes();
    mine.held_bytes = rig.weight_bytes + double(filled.allocated_bytes());
    mine.rank = rig.world.rank();
    mine.tp_rank = rig.world.tp_rank();
    mine.mp_rank = rig.world.mp_rank();
    mine.dp_rank = rig.world.dp_rank();

    std::vector<double> v = pack(mine), all(v.size() * size_t(world.size()));
    if (world.size() > 1) {
        // Doubles travel as bytes (host_view has no f64).
        world.all_gather(
            parallel::host_view(reinterpret_cast<uint8_t*>(v.data()), int64_t(v.size() * 8)),
            parallel::host_view(reinterpret_cast<uint8_t*>(all.data()), int64_t(all.size() * 8)));
    } else {
        all = v;
    }
    std::vector<RankRecord> out;
    for (int r = 0; r < world.size(); ++r) out.push_back(unpack(all.data() + r * kRankFields));
    return out;
}

// Rank 0's per-phase statistics of a calibration step (medians, or minima with
// `statistic: min`), shared so every rank holds one model.
std::vector<RankRecord> calibration_stats(Rig& rig, parallel::Communicator& world, const Point& p,
                                          const SweepConfig& cfg, PhaseCounts& med) {
    const std::vector<RankRecord> rec =
        measure(rig, world, p.memory, p.query, std::max(3, cfg.repeats), cfg.use_min, &med);
    std::vector<double> secs;
    for (const PhaseCount& c : med.p) secs.push_back(c.seconds);
    world.broadcast(
        parallel::host_view(reinterpret_cast<uint8_t*>(secs.data()), int64_t(secs.size() * 8)), 0);
    for (int ph = 0; ph < kBenchPhases; ++ph) med.p[ph].seconds = secs[ph];
    return rec;
}

// ---- alpha-beta probe -----------------------------------------------------------------------

double median(std::vector<double> v) {
    return pick(std::move(v), false);
}

// All-gathers of growing size and bare barriers over the world; alpha and beta from a
// least-squares line through the medians (t = (p - 1) alpha + (p - 1) n beta).
void probe_links(parallel::Communicator& world, Calibration& cal, BenchClock clock) {
    const int P = world.size();
    if (P == 1) return;
    std::vector<double> xs, ys;
    for (int64_t n : {int64_t(4) << 10, int64_t(64) << 10, int64_t(256) << 10, int64_t(1) << 20}) {
        std::vector<float> in(size_t(n / 4), 1.f), out(in.size() * size_t(P));
        std::vector<double> t;
        for (int rep = 0; rep < 7; ++rep) {
            world.barrier();
            const double t0 = bench_clock_seconds(clock);
            world.all_gather(parallel::host_view(in.data(), int64_t(in.size())),
                             parallel::host_view(out.data(), int64_t(out.size())));
            t.push_back(bench_clock_seconds(clock) - t0);
        }
        // Every rank takes rank 0's figures, so the model is the same everywhere.
        double m = median(t);
        world.broadcast_value(m, 0);
        xs.push_back(double(n));
        ys.push_back(m);
    }
    std::vector<double> bt;
    for (int rep = 0; rep < 21; ++rep) {
        world.barrier();
        const double t0 = bench_clock_seconds(clock);
        world.barrier();
        bt.push_back(bench_clock_seconds(clock) - t0);
    }
    double b = median(bt);
    world.broadcast_value(b, 0);
    const double n = double(xs.size());
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
        sx += xs[i];
        sy += ys[i];
        sxx += xs[i] * xs[i];
        sxy += xs[i] * ys[i];
    }
    const double slope = std::max(0.0, (n * sxy - sx * sy) / (n * sxx - sx * sx));
    const double icpt = std::max(0.0, (sy - slope * sx) / n);
    cal.alpha = icpt / (P - 1);
    cal.beta = slope / (P - 1);
    cal.barrier = b;
}

// ---- output -----------------------------------------------------------------------------------

std::string fmt(double v, const char* f = "%.6g") {
    char b[64];
    std::snprintf(b, sizeof(b), f, v);
    return b;
}

StepShape shape_of(const SweepConfig& cfg, const Point& p) {
    StepShape s;
    s.model = cfg.model;
    s.tp = p.layout.tp;
    s.mp = p.layout.mp;
    s.memory_tokens = p.memory;
    s.query_tokens = p.query;
    s.retrieval = p.retrieval;
    s.k = p.k > 0 ? p.k : 1;
    s.weights = multiplied_weights(cfg, p.precision);
    s.precision = p.precision;
    s.mem_dtype = cfg.model.mem_dtype;
    return s;
}

json point_json(const Point& p, int world) {
    return {{"backend", p.backend},
            {"precision", precision_name(p.precision)},
            {"tp", p.layout.tp},
            {"mp", p.layout.mp},
            {"dp", p.layout.dp},
            {"world", world},
            {"retrieval", retrieval_name(p.retrieval)},
            {"k", p.k},
            {"memory_tokens", p.memory},
            {"query_tokens", p.query}};
}

json phases_json(const PhaseCounts& c) {
    json o = json::object();
    for (int i = 0; i < kBenchPhases; ++i) {
        const PhaseCount& x = c.p[i];
        o[bench_phase_name(static_cast<BenchPhase>(i))] = {
            {"calls", x.calls}, {"seconds", x.seconds}, {"flops", x.flops}, {"bytes", x.bytes}};
    }
    return o;
}

std::string csv_header(bool predict) {
    std::string h =
        "backend,precision,tp,mp,dp,world,retrieval,k,memory_tokens,query_tokens,total_s,"
        "total_max_s,phases_sum_s";
    for (int i = 0; i < kBenchPhases; ++i) {
        h += std::string(",") + bench_phase_name(static_cast<BenchPhase>(i)) + "_s";
    }
    h += ",comm_share,flops,flop_per_s,bytes,bytes_per_s,sent_bytes,sent_bytes_max,"
         "peak_rss_bytes_max,held_bytes";
    if (predict) {
        h += ",pred_total_s";
        for (int i = 0; i < kBenchPhases; ++i) {
            h += std::string(",pred_") + bench_phase_name(static_cast<BenchPhase>(i)) + "_s";
        }
    }
    return h + "\n";
}

bool is_comm(int i) {
    const BenchPhase p = static_cast<BenchPhase>(i);
    return p == BenchPhase::kTpAllreduce || p == BenchPhase::kMpAllgather || p == BenchPhase::kWait;
}

double sent_bytes(const PhaseCounts& c) {
    return c[BenchPhase::kTpAllreduce].bytes + c[BenchPhase::kMpAllgather].bytes;
}

json machine_json(const SweepConfig& cfg, const std::string& sweep_model, int world) {
    char host[256] = "unknown";
    gethostname(host, sizeof(host) - 1);
    std::string cpu = "unknown";
    {
        std::ifstream in("/proc/cpuinfo");
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("model name", 0) == 0) {
                cpu = line.substr(line.find(':') + 2);
                break;
            }
        }
    }
    double mem = 0;
    {
        std::ifstream in("/proc/meminfo");
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("MemTotal:", 0) == 0) mem = std::atof(line.c_str() + 9) * 1024.0;
        }
    }
    char date[64];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    return {{"host", host},
            {"cpu", cpu},
            {"hardware_threads", hardware_cpu_count()},
            {"allowed_cpus", allowed_cpu_count()},
            {"memory_bytes", mem},
            {"world_size", world},
            {"threads_per_rank", cfg.threads},
            {"clock", cfg.cpu_clock ? "cpu" : "wall"},
            {"statistic", cfg.use_min ? "min" : "median"},
            {"date_utc", date},
            {"model", sweep_model},
            {"shape", json::parse(model_config_to_json(cfg.model))},
            {"weights", dtype_name(cfg.weights)},
            {"backends", cfg.backends},
            {"cuda_devices", backend_device_count("cuda")}};
}

std::vector<Point> grid(const SweepConfig& cfg) {
    std::vector<Point> pts;
    for (const std::string& b : cfg.backends)
        for (Precision pr : cfg.precisions)
            for (const SweepLayout& l : cfg.layouts)
                for (Retrieval r : cfg.retrievals)
                    for (int64_t k : r == Retrieval::kTopK ? cfg.ks : std::vector<int64_t>{0})
                        for (int64_t m : cfg.memory_tokens)
                            for (int64_t q : cfg.query_tokens) {
                                pts.push_back({b, pr, l, r, k, m, q});
                            }
    return pts;
}

// Why a layout cannot run on this world, or "".
std::string skip_reason(const SweepConfig& cfg, const Point& p, int world) {
    const SweepLayout& l = p.layout;
    if (l.tp * l.mp * l.dp != world) {
        return "tp x mp x dp = " + std::to_string(l.tp * l.mp * l.dp) + " ranks, the world has " +
               std::to_string(world);
    }
    try {
        parallel::World(world, 0, l.tp, l.mp)
            .validate(
                {cfg.model.num_attention_heads, cfg.model.intermediate_size, cfg.model.vocab_size});
    } catch (const Error& e) {
        return e.what();
    }
    if (p.backend == "cuda" && backend_device_count("cuda") == 0) {
        return "backend cuda: no CUDA device here (or not built with CUDA)";
    }
    if (p.backend == "cpu") {
        // Every rank of the node holds its weight slice and two copies of its memory shard
        // (the filled template and the working sequence); a point beyond the host's memory
        // would end in the OOM killer, not in a message.
        const StepShape s = shape_of(cfg, p);
        const double per_rank =
            rank_bytes(s) + double(memory_tokens_on_rank(s, 0)) *
                                double(s.model.memory_bytes_per_token(s.mem_dtype)) / double(s.tp);
        const double node = per_rank * double(std::min(world, parallel::node_info().local_size()));
        const double have = double(host_memory_bytes());
        if (have > 0 && node > 0.9 * have) {
            return "needs ~" + fmt(node / 1e9, "%.1f") + " GB of host memory on this node (" +
                   host_memory_source() + ": " + fmt(have / 1e9, "%.1f") + " GB)";
        }
    }
    return "";
}

std::string rig_key(const Point& p) {
    return p.backend + "/" + precision_name(p.precision) + "/" + std::to_string(p.layout.tp) + "/" +
           std::to_string(p.layout.mp) + "/" + retrieval_name(p.retrieval) + "/" +
           std::to_string(p.k);
}

}  // namespace

SweepSummary run_sweep(const SweepConfig& cfg, parallel::Communicator& world,
                       const SweepOptions& opts) {
    const int P = world.size();
    const bool root = world.rank() == 0;
    SweepSummary sum;
    std::ofstream csv, jsonl;
    if (root) {
        std::error_code ec;
        std::filesystem::create_directories(opts.output, ec);
        FOT_CHECK(!ec && std::filesystem::is_directory(opts.output), "--output ", opts.output,
                  ": cannot create the folder (", ec.message(), ")");
        csv.open(opts.output + "/points.csv");
        jsonl.open(opts.output + "/points.jsonl");
        FOT_CHECK(csv && jsonl, "--output ", opts.output, ": cannot write points.csv there");
        std::ofstream(opts.output + "/machine.json")
            << machine_json(cfg, cfg.model_name, P).dump(2) << "\n";
        csv << csv_header(opts.predict);
    }
    // Rank 0 decided whether the folder is usable; everyone stops if not.
    int ok = root ? 1 : 0;
    world.broadcast_value(ok, 0);

    const std::vector<Point> points = grid(cfg);
    std::vector<Point> runnable;
    for (const Point& p : points) {
        const std::string why = skip_reason(cfg, p, P);
        if (why.empty()) {
            runnable.push_back(p);
            continue;
        }
        ++sum.skipped;
        if (root) {
            json j = point_json(p, P);
            j["skipped"] = why;
            jsonl << j.dump() << "\n";
            std::printf("skip: tp %d mp %d dp %d %s: %s\n", p.layout.tp, p.layout.mp, p.layout.dp,
                        retrieval_name(p.retrieval), why.c_str());
        }
    }
    // Skips repeat per memory/query size; one line per point is enough in the file, and the
    // console saw each.
    if (root) std::fflush(stdout);

    // ---- calibration (predict) ----
    // Per backend x precision: rates from tp = mp = 1, dp = world (every rank busy, as in
    // every layout), for each retrieval mode; links from the probe.
    std::map<std::string, Calibration> cals;
    json model_json = json::object();
    if (opts.predict && !runnable.empty()) {
        // Memory per rank over the grid: rank 0's shard of every runnable point.
        const int64_t W = cfg.model.max_position_embeddings;
        int64_t lo = INT64_MAX, hi = 0;
        for (const Point& p : runnable) {
            const int64_t m = memory_tokens_on_rank(shape_of(cfg, p), 0);
            lo = std::min(lo, m);
            hi = std::max(hi, m);
        }
        if (cfg.calibration_memory > 0) hi = cfg.calibration_memory;
        lo = std::max(std::min(lo, hi), W);
        hi = std::max(hi, W);
        auto round_w = [W](double m) { return std::max<int64_t>(W, int64_t(m / W + 0.5) * W); };
        const std::vector<int64_t> cal_sizes = {
            round_w(double(lo)), round_w(std::sqrt(double(lo) * double(hi))), round_w(double(hi))};
        Calibration links;
        probe_links(world, links, cfg.cpu_clock ? BenchClock::kCpu : BenchClock::kWall);
        for (const std::string& b : cfg.backends) {
            for (Precision pr : cfg.precisions) {
                Calibration cal = links;
                for (Retrieval r : cfg.retrievals) {
                    Point p{b, pr, {1, 1, P}, r, r == Retrieval::kTopK ? cfg.ks[0] : 0, 0, 0};
                    if (!skip_reason(cfg, p, P).empty()) continue;
                    p.query =
                        cfg.calibration_query > 0 ? cfg.calibration_query : cfg.query_tokens[0];
                    auto rig = make_rig(cfg, world, p);
                    // Three memory sizes spanning the memory per rank of the grid's
                    // points (so the model interpolates), so that phases growing with the
                    // memory get a rate and a fixed part.
                    std::vector<StepShape> shapes;
                    std::vector<PhaseCounts> meds;
                    std::vector<RankRecord> rec;
                    // Rounds over the sizes, so that a slow drift of the host's load
                    // (other jobs) reaches every size alike; per phase the median (min) round.
                    constexpr int kRounds = 3;
                    std::vector<std::vector<PhaseCounts>> rounds(cal_sizes.size());
                    for (int round = 0; round < kRounds; ++round) {
                        for (size_t i = 0; i < cal_sizes.size(); ++i) {
                            Point q = p;
                            q.memory = cal_sizes[i];
                            rounds[i].emplace_back();
                            rec = calibration_stats(*rig, world, q, cfg, rounds[i].back());
                            if (round == 0) shapes.push_back(shape_of(cfg, q));
                        }
                    }
                    for (const std::vector<PhaseCounts>& rs : rounds) {
                        PhaseCounts m = rs[0];
                        for (int ph = 0; ph < kBenchPhases; ++ph) {
                            std::vector<double> v;
                            for (const PhaseCounts& c : rs) v.push_back(c.p[ph].seconds);
                            m.p[ph].seconds = pick(v, cfg.use_min);
                        }
                        meds.push_back(m);
                    }
                    calibrate_rates(cal, r, shapes, meds);
                    p.memory = cal_sizes.back();
                    if (root) {
                        std::printf("calibration: %s %s %s M %lld Q %lld: %.3f s\n", b.c_str(),
                                    precision_name(pr), retrieval_name(r), (long long)p.memory,
                                    (long long)p.query, rec[0].total);
                    }
                }
                pool_mode_independent_rates(cal, cfg.use_min);
                // Merge never runs at mp = 1: it moves partials like the other memory ops.
                for (auto& rate : cal.rate) {
                    const size_t m = size_t(BenchPhase::kMerge), o = size_t(BenchPhase::kOther);
                    if (rate[m] == 0) rate[m] = rate[o];
                }
                const std::string key = b + "/" + precision_name(pr);
                cals[key] = cal;
                json rates = json::object();
                for (int ri = 0; ri < 2; ++ri) {
                    json one = json::object();
                    for (int i = 0; i <= int(BenchPhase::kOther); ++i) {
                        one[bench_phase_name(BenchPhase(i))] = {{"rate", cal.rate[ri][i]},
                                                                {"per_row_s", cal.per_row[ri][i]}};
                    }
                    rates[ri == 0 ? "dense" : "topk"] = one;
                }
                model_json[key] = {{"rates (flop/s: gemm, local_attn, mem_score, topk_select; "
                                    "byte/s: merge, other)",
                                    rates},
                                   {"alpha_s", cal.alpha},
                                   {"beta_s_per_byte", cal.beta},
                                   {"barrier_s", cal.barrier}};
            }
        }
        if (root) std::ofstream(opts.output + "/model.json") << model_json.dump(2) << "\n";
    }

    // ---- the grid ----
    Timer clock;
    std::unique_ptr<Rig> rig;
    std::string key;
    if (root && opts.predict) {
        std::printf("%-44s %10s %10s %7s   (phases > 10 ms: measured/predicted ms, error)\n",
                    "point", "total_s", "pred_s", "error");
    }
    // With rounds > 1 the grid is walked that many times and a point reports the round whose
    // rank-0 call was fastest (statistic: min) or the median one: a slow spell of the host
    // (seconds long on shared VMs) then has to hit the same point in every round. Files are
    // written during the last round, point by point.
    const size_t n_points = runnable.size(), n_steps = n_points * size_t(cfg.rounds);
    std::vector<std::vector<std::vector<RankRecord>>> rounds_of(n_points);
    for (size_t step = 0; step < n_steps; ++step) {
        const size_t i = step % n_points;
        const int round = int(step / n_points);
        const Point& p = runnable[i];
        if (!rig || key != rig_key(p)) {
            rig.reset();
            rig = make_rig(cfg, world, p);
            key = rig_key(p);
        }
        rounds_of[i].push_back(measure(*rig, world, p.memory, p.query, cfg.repeats, cfg.use_min));
        if (round + 1 < cfg.rounds) {
            if (root) {
                const double eta = clock.seconds() / double(step + 1) * double(n_steps - step - 1);
                std::printf("[round %d/%d] [%zu/%zu] %s: %.4f s, ETA %s\n", round + 1, cfg.rounds,
                            i + 1, n_points, point_label(p).c_str(), rounds_of[i].back()[0].total,
                            ProgressLine::format_duration(eta).c_str());
                std::fflush(stdout);
            }
            continue;
        }
        std::vector<std::vector<RankRecord>>& all = rounds_of[i];
        std::sort(all.begin(), all.end(),
                  [](const auto& a, const auto& b) { return a[0].total < b[0].total; });
        const std::vector<RankRecord> rec = all[cfg.use_min ? 0 : all.size() / 2];
        all.clear();
        ++sum.measured;
        if (!root) continue;

        const RankRecord& r0 = rec[0];
        double total_max = 0, sent_max = 0, rss_max = 0;
        for (const RankRecord& r : rec) {
            total_max = std::max(total_max, r.total);
            sent_max = std::max(sent_max, sent_bytes(r.counts));
            rss_max = std::max(rss_max, r.peak_rss);
        }
        double flops = 0, bytes = 0, comm = 0;
        for (int ph = 0; ph < kBenchPhases; ++ph) {
            if (is_comm(ph)) {
                comm += r0.counts.p[ph].seconds;
            } else {
                flops += r0.counts.p[ph].flops;
                bytes += r0.counts.p[ph].bytes;
            }
        }
        const double phases = r0.counts.seconds();
        PhaseCounts pred;
        double pred_total = 0;
        if (opts.predict) {
            pred = predict_step(shape_of(cfg, p),
                                cals.at(p.backend + "/" + precision_name(p.precision)));
            pred_total = pred.seconds();
        }
        std::ostringstream row;
        row << p.backend << ',' << precision_name(p.precision) << ',' << p.layout.tp << ','
            << p.layout.mp << ',' << p.layout.dp << ',' << P << ',' << retrieval_name(p.retrieval)
            << ',' << p.k << ',' << p.memory << ',' << p.query << ',' << fmt(r0.total) << ','
            << fmt(total_max) << ',' << fmt(phases);
        for (const PhaseCount& c : r0.counts.p) row << ',' << fmt(c.seconds);
        row << ',' << fmt(r0.total > 0 ? comm / r0.total : 0) << ',' << fmt(flops) << ','
            << fmt(r0.total > 0 ? flops / r0.total : 0) << ',' << fmt(bytes) << ','
            << fmt(r0.total > 0 ? bytes / r0.total : 0) << ',' << fmt(sent_bytes(r0.counts)) << ','
            << fmt(sent_max) << ',' << fmt(rss_max) << ',' << fmt(r0.held_bytes);
        if (opts.predict) {
            row << ',' << fmt(pred_total);
            for (const PhaseCount& c : pred.p) row << ',' << fmt(c.seconds);
        }
        csv << row.str() << "\n";
        csv.flush();

        json j = point_json(p, P);
        j["total_s"] = r0.total;
        j["total_max_s"] = total_max;
        j["phases_sum_s"] = phases;
        j["comm_share"] = r0.total > 0 ? comm / r0.total : 0;
        j["flop_per_s"] = r0.total > 0 ? flops / r0.total : 0;
        j["bytes_per_s"] = r0.total > 0 ? bytes / r0.total : 0;
        j["ranks"] = json::array();
        for (const RankRecord& r : rec) {
            j["ranks"].push_back({{"rank", r.rank},
                                  {"tp_rank", r.tp_rank},
                                  {"mp_rank", r.mp_rank},
                                  {"dp_rank", r.dp_rank},
                                  {"total_s", r.total},
                                  {"sent_bytes", sent_bytes(r.counts)},
                                  {"peak_rss_bytes", r.peak_rss},
                                  {"held_bytes", r.held_bytes},
                                  {"phases", phases_json(r.counts)}});
        }
        if (opts.predict) {
            j["predicted"] = phases_json(pred);
            j["predicted_total_s"] = pred_total;
        }
        jsonl << j.dump() << "\n";
        jsonl.flush();

        const std::string label_s = point_label(p);
        const char* label = label_s.c_str();
        const double eta = clock.seconds() / double(step + 1) * double(n_steps - step - 1);
        if (opts.predict) {
            std::string detail;
            for (int ph = 0; ph < kBenchPhases; ++ph) {
                const double m = r0.counts.p[ph].seconds, q = pred.p[ph].seconds;
                if (m <= 0.010) continue;
                const double err = q / m - 1;
                // `wait` is load imbalance: reported, not modelled (perf_model.h).
                if (BenchPhase(ph) != BenchPhase::kWait) {
                    sum.max_error_over_10ms = std::max(sum.max_error_over_10ms, std::fabs(err));
                }
                detail += std::string(" ") + bench_phase_name(BenchPhase(ph)) + " " +
                          fmt(m * 1e3, "%.1f") + "/" + fmt(q * 1e3, "%.1f") + " " +
                          fmt(err * 100, "%+.0f") + "%";
            }
            std::printf("%-44s %10.4f %10.4f %+6.0f%%  %s\n", label, r0.total, pred_total,
                        r0.total > 0 ? (pred_total / r0.total - 1) * 100 : 0.0, detail.c_str());
        }
        std::printf("[%zu/%zu] %s: %.4f s (phases %.4f s, comm %.0f%%), %.2f GFLOP/s, ETA %s\n",
                    i + 1, n_points, label, r0.total, phases,
                    r0.total > 0 ? comm / r0.total * 100 : 0.0,
                    r0.total > 0 ? flops / r0.total / 1e9 : 0.0,
                    ProgressLine::format_duration(eta).c_str());
        std::fflush(stdout);
    }
    if (root) {
        std::printf("sweep: %d points measured, %d skipped; files in %s\n", sum.measured,
                    sum.skipped, opts.output.c_str());
        if (opts.predict && sum.max_error_over_10ms >= 0) {
            std::printf(
                "prediction error: max %.1f%% over phases longer than 10 ms (wait, the "
                "load imbalance, is not modelled)\n",
                sum.max_error_over_10ms * 100);
        }
    }
    // Every rank learns the root's summary (the command's exit code depends on nothing else).
    world.broadcast_value(sum, 0);
    return sum;
}

std::string project_sweep(const SweepConfig& cfg, const std::string& hardware) {
    const Hardware* hw = find_hardware(hardware);
    FOT_CHECK(hw != nullptr, "unknown hardware '", hardware, "'");
    std::ostringstream o;
    o << "projection (performance model, not a measurement) on " << hw->name << ": "
      << hw->description << "\n";
    o << "model " << cfg.model_name << ", weights "
      << dtype_name(multiplied_weights(cfg, cfg.precisions[0])) << ", one step of Q tokens\n";
    char line[512];
    std::snprintf(line, sizeof(line),
                  "%5s %4s %4s %4s %-6s %6s %10s %6s %10s %10s %10s %10s %10s %9s %s\n", "gpus",
                  "tp", "mp", "dp", "retr", "k", "memory", "Q", "total_ms", "gemm_ms", "attn_ms",
                  "topk_ms", "comm_ms", "GB/gpu", "fits");
    o << line;
    for (const Point& p : grid(cfg)) {
        const StepShape s = shape_of(cfg, p);
        const PhaseCounts c = project_step(s, *hw);
        const double gb = rank_bytes(s) / 1e9;
        const double attn = c[BenchPhase::kLocalAttn].seconds + c[BenchPhase::kMemScore].seconds +
                            c[BenchPhase::kMerge].seconds;
        const double topk = c[BenchPhase::kTopkSelect].seconds;
        const double comm =
            c[BenchPhase::kTpAllreduce].seconds + c[BenchPhase::kMpAllgather].seconds;
        std::snprintf(line, sizeof(line),
                      "%5d %4d %4d %4d %-6s %6lld %10lld %6lld %10.2f %10.2f %10.2f %10.2f %10.2f "
                      "%9.1f %s\n",
                      p.layout.tp * p.layout.mp * p.layout.dp, p.layout.tp, p.layout.mp,
                      p.layout.dp, retrieval_name(p.retrieval), (long long)p.k, (long long)p.memory,
                      (long long)p.query, c.seconds() * 1e3, c[BenchPhase::kGemm].seconds * 1e3,
                      attn * 1e3, topk * 1e3, comm * 1e3, gb,
                      gb * 1e9 <= 0.9 * hw->mem_bytes ? "yes" : "no");
        o << line;
    }
    return o.str();
}

}  // namespace fot
