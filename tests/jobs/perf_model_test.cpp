// The bench performance model (runtime/jobs/perf_model.h) and sweep files
// (config/sweep_config.h) in one process: operation counts against what the timed backend
// records, calibration on synthetic timings, the alpha-beta formulas, and sweep-file errors.
// The multi-rank layouts are checked end to end by tests/e2e/bench_sweep_test.sh.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "config/sweep_config.h"
#include "parallel/self_communicator.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/jobs/perf_model.h"
#include "runtime/jobs/phase_timer.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/random_weights.h"

namespace fot {
namespace {

StepShape tiny_step(Retrieval r, Precision p, int64_t memory, int64_t query) {
    StepShape s;
    EXPECT_TRUE(builtin_model_shape("tiny", &s.model));
    s.model.num_hidden_layers = 3;  // memory layer 1 only: smaller and still mixed
    s.model.mem_layers = {1};
    s.memory_tokens = memory;
    s.query_tokens = query;
    s.retrieval = r;
    s.k = 8;
    s.precision = p;
    s.weights = p == Precision::kFast ? DType::kBF16 : DType::kF32;
    return s;
}

// One measured step on a single rank, as the sweep runs it.
PhaseCounts measure_counts(const StepShape& s) {
    CpuBackend cpu(1);
    cpu.set_precision(s.precision);
    PhaseCounts counts;
    TimedBackend timed(cpu, counts);
    parallel::SelfCommunicator self;
    ModelOptions mo;
    mo.last_context_length = s.model.max_position_embeddings;
    mo.retrieval = s.retrieval;
    mo.k = s.k;
    mo.precision = s.precision;
    LongLlama model(s.model, random_model_weights(s.model, cpu, s.weights, 3), timed, self, self,
                    mo);
    Sequence seq = model.new_sequence(0);
    model.fill_memory(seq, s.memory_tokens, 5);
    EXPECT_EQ(seq.memory_tokens(), s.memory_tokens);
    std::vector<int32_t> ids(static_cast<size_t>(s.query_tokens), 7);
    ForwardOptions fo;
    fo.logits = LogitsRows::kLast;
    fo.on_logits = [](int64_t, TensorView) {};
    counts = PhaseCounts{};
    model.forward(seq, ids, fo);
    return counts;
}

TEST(PerfModel, CountsEqualWhatTheTimedBackendRecords) {
    for (Retrieval r : {Retrieval::kDense, Retrieval::kTopK}) {
        for (Precision p : {Precision::kExact, Precision::kFast}) {
            for (int64_t memory : {int64_t(0), int64_t(700), int64_t(1536)}) {
                const StepShape s = tiny_step(r, p, memory, 33);
                const PhaseCounts got = measure_counts(s), want = step_counts(s);
                for (int i = 0; i < kBenchPhases; ++i) {
                    const char* name = bench_phase_name(BenchPhase(i));
                    SCOPED_TRACE(std::string(retrieval_name(r)) + " " + precision_name(p) + " M " +
                                 std::to_string(memory) + " " + name);
                    EXPECT_EQ(got.p[i].calls, want.p[i].calls);
                    EXPECT_DOUBLE_EQ(got.p[i].flops, want.p[i].flops);
                    EXPECT_DOUBLE_EQ(got.p[i].bytes, want.p[i].bytes);
                }
                EXPECT_GT(got[BenchPhase::kGemm].seconds, 0);
                EXPECT_EQ(got[BenchPhase::kMemScore].calls > 0, memory > 0);
            }
        }
    }
}

TEST(PerfModel, MemoryPerRankFollowsTheBlockPlacement) {
    StepShape s = tiny_step(Retrieval::kDense, Precision::kExact, 5 * 512 + 100, 8);
    s.mp = 2;  // blocks 0, 2, 4 (512 each) on rank 0; 1, 3 and the 100-token block 5 on rank 1
    EXPECT_EQ(memory_tokens_on_rank(s, 0), 3 * 512);
    EXPECT_EQ(memory_tokens_on_rank(s, 1), 2 * 512 + 100);
}

TEST(PerfModel, CalibrationRecoversRatesAndFixedCosts) {
    // Synthetic timings from a known machine: every phase work / rate, plus a fixed cost per
    // (head, query) row for mem_score. The fit must find them and predict another shape.
    const double rate = 3e9, per_row = 2e-6;
    auto synth = [&](const StepShape& s) {
        PhaseCounts c = step_counts(s);
        const double rows = double(s.model.num_attention_heads / s.tp) * double(s.query_tokens);
        for (int i = 0; i <= int(BenchPhase::kOther); ++i) {
            const BenchPhase p = BenchPhase(i);
            const bool by_flops = p != BenchPhase::kMerge && p != BenchPhase::kOther;
            c.p[i].seconds = (by_flops ? c.p[i].flops : c.p[i].bytes) / rate;
            if (p == BenchPhase::kMemScore) c.p[i].seconds += double(c.p[i].calls) * rows * per_row;
        }
        return c;
    };
    std::vector<StepShape> shapes;
    std::vector<PhaseCounts> measured;
    for (int64_t m : {512, 1024, 2048}) {
        shapes.push_back(tiny_step(Retrieval::kTopK, Precision::kExact, m, 64));
        measured.push_back(synth(shapes.back()));
    }
    Calibration cal;
    calibrate_rates(cal, Retrieval::kTopK, shapes, measured);
    EXPECT_NEAR(cal.rate[1][int(BenchPhase::kMemScore)], rate, rate * 1e-6);
    EXPECT_NEAR(cal.per_row[1][int(BenchPhase::kMemScore)], per_row, per_row * 1e-6);
    EXPECT_NEAR(cal.rate[1][int(BenchPhase::kGemm)], rate, rate * 1e-9);
    EXPECT_EQ(cal.per_row[1][int(BenchPhase::kGemm)], 0);  // same work in every step

    StepShape other = tiny_step(Retrieval::kTopK, Precision::kExact, 4096, 32);
    const PhaseCounts want = synth(other), got = predict_step(other, cal);
    for (int i = 0; i <= int(BenchPhase::kOther); ++i) {
        if (BenchPhase(i) == BenchPhase::kMerge) continue;  // never ran: borrows `other`
        EXPECT_NEAR(got.p[i].seconds, want.p[i].seconds, want.p[i].seconds * 1e-6 + 1e-12)
            << bench_phase_name(BenchPhase(i));
    }
}

TEST(PerfModel, ModeIndependentPhasesTakeTheBetterOfBothCalibrations) {
    Calibration cal;
    const int g = int(BenchPhase::kGemm), m = int(BenchPhase::kMemScore);
    const int o = int(BenchPhase::kOther), l = int(BenchPhase::kLocalAttn);
    cal.rate[0][g] = 10e9;  // dense calibration ran in a slow spell
    cal.rate[1][g] = 13e9;
    cal.rate[0][m] = 20e9;  // mem_score differs by mode: left alone
    cal.rate[1][m] = 5e9;
    cal.rate[0][o] = 4e9;  // fitted with a fixed part: left alone
    cal.rate[1][o] = 6e9;
    cal.per_row[1][o] = 1e-7;
    cal.rate[0][l] = 8e9;  // one mode only: left alone
    Calibration med = cal;
    pool_mode_independent_rates(cal, true);
    EXPECT_EQ(cal.rate[0][g], 13e9);
    EXPECT_EQ(cal.rate[1][g], 13e9);
    EXPECT_EQ(cal.rate[0][m], 20e9);
    EXPECT_EQ(cal.rate[1][m], 5e9);
    EXPECT_EQ(cal.rate[0][o], 4e9);
    EXPECT_EQ(cal.rate[1][o], 6e9);
    EXPECT_EQ(cal.rate[0][l], 8e9);
    EXPECT_EQ(cal.rate[1][l], 0);
    pool_mode_independent_rates(med, false);
    EXPECT_EQ(med.rate[0][g], 11.5e9);
    EXPECT_EQ(med.rate[1][g], 11.5e9);
}

TEST(PerfModel, CollectivesFollowAlphaBeta) {
    StepShape s = tiny_step(Retrieval::kDense, Precision::kExact, 4096, 16);
    s.tp = 2;
    s.mp = 4;
    Calibration cal;
    cal.alpha = 1e-5;
    cal.beta = 1e-9;
    cal.barrier = 3e-6;
    const PhaseCounts c = predict_step(s, cal);
    const PhaseCount& tp = c[BenchPhase::kTpAllreduce];
    const double n = 16.0 * 256 * 4;  // [Q, C] f32
    ASSERT_EQ(tp.calls, 1 + 2 * 3);
    EXPECT_DOUBLE_EQ(tp.bytes, n * double(tp.calls));
    EXPECT_NEAR(tp.seconds, double(tp.calls) * (2 * 1e-5 + 2 * 0.5 * n * 1e-9), 1e-15);
    const PhaseCount& mp = c[BenchPhase::kMpAllgather];
    const double part = 2.0 * 16 * (64 + 2) * 4;  // [H / tp, Q, D + 2] f32, one memory layer
    ASSERT_EQ(mp.calls, 1);
    EXPECT_DOUBLE_EQ(mp.bytes, part);
    EXPECT_NEAR(mp.seconds, 3 * 1e-5 + 3 * part * 1e-9, 1e-15);
    EXPECT_EQ(c[BenchPhase::kWait].calls, tp.calls + mp.calls);
    EXPECT_NEAR(c[BenchPhase::kWait].seconds, double(tp.calls + mp.calls) * 3e-6, 1e-15);
}

TEST(SweepConfig, ReadsTheExamplesAndRejectsMistakesByName) {
    for (const char* f : {"sweep-ci.yaml", "sweep-gpu.yaml", "sweep-3b-projection.yaml",
                          "sweep-7b-projection.yaml"}) {
        Result<SweepConfig> c =
            load_sweep_config(std::string(FOT_SOURCE_DIR) + "/config/examples/" + f);
        EXPECT_TRUE(c.ok()) << f << ": " << (c.ok() ? "" : c.status().message());
    }
    auto error = [](const std::string& yaml) {
        Result<SweepConfig> c = parse_sweep_config(yaml, "s.yaml");
        return c.ok() ? std::string("accepted") : c.status().message();
    };
    using ::testing::HasSubstr;
    EXPECT_THAT(error("model: 13b\n"), HasSubstr("s.yaml: model '13b' is neither tiny, 3b, 7b"));
    EXPECT_THAT(error("k: [0]\n"), HasSubstr("s.yaml: k "));
    EXPECT_THAT(error("retrieval: knn\n"), HasSubstr("retrieval must be dense or topk"));
    EXPECT_THAT(error("layouts: [{tp: 1, pp: 2}]\n"),
                HasSubstr("layouts[0].pp is not tp, mp or dp"));
    EXPECT_THAT(error("shape: {hidden_size: 250}\n"), HasSubstr("s.yaml: model"));
    EXPECT_THAT(error("clock: gpu\n"), HasSubstr("clock must be wall or cpu"));
    EXPECT_THAT(error("statistic: mean\n"), HasSubstr("statistic must be median or min"));
    EXPECT_THAT(error("rounds: 0\n"), HasSubstr("rounds"));
    EXPECT_THAT(error("rounds: 5000\n"), HasSubstr("rounds must be at most 1000"));
    EXPECT_THAT(error("repeats: 9999999999\n"), HasSubstr("repeats must be at most 100000"));
    EXPECT_THAT(error("memory_tokens: [4k, x]\n"), HasSubstr("memory_tokens"));
    EXPECT_THAT(error("[1, 2]\n"), HasSubstr("expected a mapping"));
    Result<SweepConfig> ok = parse_sweep_config("model: 7b\nmemory_tokens: 1m\n", "s.yaml");
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(ok.value().model.hidden_size, 4096);
    EXPECT_EQ(ok.value().memory_tokens, std::vector<int64_t>{1 << 20});
    EXPECT_FALSE(ok.value().use_min);  // median unless asked
    Result<SweepConfig> ci =
        load_sweep_config(std::string(FOT_SOURCE_DIR) + "/config/examples/sweep-ci.yaml");
    ASSERT_TRUE(ci.ok());
    EXPECT_TRUE(ci.value().use_min);
    EXPECT_GT(ci.value().rounds, 1);
}

}  // namespace
}  // namespace fot
