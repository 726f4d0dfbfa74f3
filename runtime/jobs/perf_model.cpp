#include "runtime/jobs/perf_model.h"

#include <algorithm>
#include <cmath>

#include "runtime/core/status.h"

namespace fot {

namespace {

void charge(PhaseCounts& c, BenchPhase p, double flops, double bytes, int64_t calls = 1) {
    PhaseCount& x = c[p];
    x.calls += calls;
    x.flops += flops * double(calls);
    x.bytes += bytes * double(calls);
}

double allreduce_s(double p, double n, double alpha, double beta) {
    return p <= 1 ? 0 : 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta;
}
double allgather_s(double p, double n, double alpha, double beta) {
    return p <= 1 ? 0 : (p - 1) * alpha + (p - 1) * n * beta;
}

bool is_flop_phase(BenchPhase p) {
    return p == BenchPhase::kGemm || p == BenchPhase::kLocalAttn || p == BenchPhase::kMemScore ||
           p == BenchPhase::kTopkSelect;
}
bool is_compute_phase(BenchPhase p) {
    return static_cast<int>(p) <= static_cast<int>(BenchPhase::kOther);
}

// Seconds of the collectives and waits of `c` (calls and bytes from step_counts) with
// alpha-beta parameters for the tp and mp groups.
void predict_collectives(PhaseCounts& out, const StepShape& s, double tp_alpha, double tp_beta,
                         double mp_alpha, double mp_beta, double barrier) {
    const PhaseCount& tp = out[BenchPhase::kTpAllreduce];
    if (tp.calls > 0) {
        out[BenchPhase::kTpAllreduce].seconds =
            double(tp.calls) * allreduce_s(s.tp, tp.bytes / double(tp.calls), tp_alpha, tp_beta);
    }
    const PhaseCount& mp = out[BenchPhase::kMpAllgather];
    if (mp.calls > 0) {
        // alpha per call, beta on the bytes (the calls carry different sizes in top-k mode)
        out[BenchPhase::kMpAllgather].seconds =
            double(mp.calls) * allgather_s(s.mp, 0, mp_alpha, 0) +
            allgather_s(s.mp, mp.bytes, 0, mp_beta);
    }
    out[BenchPhase::kWait].seconds = double(out[BenchPhase::kWait].calls) * barrier;
}

// (head, query) rows of one call on a rank: heads / tp x Q.
double heads_rows(const StepShape& s) {
    return double(s.model.num_attention_heads / s.tp) * double(s.query_tokens);
}

}  // namespace

int64_t memory_tokens_on_rank(const StepShape& s, int mp_rank) {
    const int64_t W = s.model.max_position_embeddings, M = s.memory_tokens;
    const int64_t blocks = (M + W - 1) / W;
    int64_t mine = 0;
    for (int64_t b = mp_rank; b < blocks; b += s.mp) mine += std::min(W, M - b * W);
    return mine;
}

PhaseCounts step_counts(const StepShape& s) {
    const ModelConfig& c = s.model;
    FOT_CHECK(c.num_attention_heads % s.tp == 0 && c.intermediate_size % s.tp == 0 &&
                  c.vocab_size % s.tp == 0,
              "tp=", s.tp, " does not divide the model");
    const double Q = double(s.query_tokens), C = double(c.hidden_size);
    const double Hr = double(c.num_attention_heads / s.tp), D = double(c.head_dim());
    const double A = Hr * D, Ir = double(c.intermediate_size / s.tp);
    const double Vr = double(c.vocab_size / s.tp);
    const double w = double(dtype_size(s.weights)), f = 4;
    // GEMM inputs (normed rows, attention output, SiLU product) are written in the dtype the
    // GEMM rounds them to (Backend::gemm_input_dtype): on the CPU backend bf16/f16 in `fast`,
    // f32 in `exact`. (CudaBackend with bf16 weights writes 2 bytes in `exact` too; the
    // difference is a few bytes per value in the `other` phase.)
    const double g = s.precision == Precision::kFast ? 2 : 4;
    const double cache = s.precision == Precision::kFast ? 2 : 4;
    const double mem = double(dtype_size(s.mem_dtype));
    const double R = double(s.mp), K = double(s.k);
    const double Mr = double(memory_tokens_on_rank(s, 0));
    const double part = Hr * Q * (D + 2) * f;
    const bool has_memory = s.memory_tokens > 0;

    PhaseCounts n;
    auto matmul = [&](double rows, double N, double Kd, double x_bytes) {
        charge(n, BenchPhase::kGemm, 2 * rows * N * Kd,
               rows * N * f + rows * Kd * x_bytes + N * Kd * w);
    };
    // `parts` matmuls of one x (Backend::matmul_group): one call, x read once.
    auto matmul_group = [&](double parts, double rows, double N, double Kd, double x_bytes) {
        charge(n, BenchPhase::kGemm, parts * 2 * rows * N * Kd,
               parts * (rows * N * f + N * Kd * w) + rows * Kd * x_bytes);
    };
    // add_rmsnorm: add (x read and written, r read) + rmsnorm (x read, out written, w read).
    const double add_norm_flops = 5 * Q * C, add_norm_bytes = Q * C * (3 * f + g) + C * f;
    // A projection back to the residual stream and the add_rmsnorm after it: with tp 1 one
    // call (Backend::matmul_add_rmsnorm, charged as a GEMM); with tp > 1 the all-reduce
    // between them keeps two.
    auto matmul_add_rmsnorm = [&](double rows, double N, double Kd, double x_bytes) {
        if (s.tp > 1) {
            matmul(rows, N, Kd, x_bytes);
            charge(n, BenchPhase::kOther, add_norm_flops, add_norm_bytes);
            return;
        }
        charge(n, BenchPhase::kGemm, 2 * rows * N * Kd + add_norm_flops,
               rows * N * f + rows * Kd * x_bytes + N * Kd * w + add_norm_bytes);
    };
    charge(n, BenchPhase::kOther, 0, 2 * Q * C * f);  // embedding
    const int64_t tp_calls = s.tp > 1 ? 1 + 2 * c.num_hidden_layers : 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const bool mem_layer =
            std::find(c.mem_layers.begin(), c.mem_layers.end(), l) != c.mem_layers.end();
        // The first norm: rmsnorm in layer 0; after it, with tp 1, the previous layer's down
        // projection did it (matmul_add_rmsnorm), else add_rmsnorm adds that layer's MLP
        // residual.
        if (l == 0) {
            charge(n, BenchPhase::kOther, 4 * Q * C, Q * C * (f + g) + C * f);  // rmsnorm
        } else if (s.tp > 1) {
            charge(n, BenchPhase::kOther, add_norm_flops, add_norm_bytes);
        }
        matmul_group(3, Q, A, C, g);                                        // q|k|v
        if (mem_layer) charge(n, BenchPhase::kOther, 0, 2 * Q * A * f, 2);  // copy_rows
        // rope_store_kv: rope of q and k when rotating, and two scatter_heads.
        const bool rotate = c.mem_positionals || !mem_layer;
        charge(n, BenchPhase::kOther, rotate ? 12 * Q * A : 0,
               (rotate ? 16 * Q * A : 0) + 4 * Q * A * f);
        const double pairs = Q * (Q + 1) / 2;
        if (!(mem_layer && has_memory)) {
            // attn_one_store: the local window alone, one op that writes the output.
            charge(n, BenchPhase::kLocalAttn, 4 * Hr * D * pairs,
                   2 * Hr * Q * D * cache + Q * A * f + Q * A * g);
        } else {
            charge(n, BenchPhase::kOther, 0, part);  // attn_partial_init
            charge(n, BenchPhase::kLocalAttn, 4 * Hr * D * pairs,
                   2 * Hr * Q * D * cache + Q * A * f + 2 * part);
            if (s.retrieval == Retrieval::kDense) {
                if (Mr > 0) {
                    charge(n, BenchPhase::kMemScore, 4 * Hr * D * Q * Mr,
                           2 * Hr * Mr * D * mem + Q * A * f + 2 * part);
                }
            } else {
                const double sel = Hr * Q * K;
                charge(n, BenchPhase::kMemScore, 2 * Hr * Q * Mr * D,
                       Hr * Mr * D * mem + Q * A * f + sel * (4 + 8 + 8));
                if (s.mp > 1) {
                    charge(n, BenchPhase::kMpAllgather, 0, sel * 4);
                    charge(n, BenchPhase::kMpAllgather, 0, sel * 8);
                }
                charge(n, BenchPhase::kTopkSelect, R * sel, R * sel * 12 + Hr * Q * 12);
                charge(n, BenchPhase::kTopkSelect, 2 * sel * D,
                       sel * D * mem + sel * 20 + 2 * part);
            }
            if (s.mp > 1) {
                charge(n, BenchPhase::kMpAllgather, 0, part);
                charge(n, BenchPhase::kMerge, 3 * R * part / f, (R + 1) * part);
            }
            charge(n, BenchPhase::kOther, Q * A, Q * A * g + part);  // finalize
        }
        matmul_add_rmsnorm(Q, C, A, g);  // o_proj and the post-attention norm
        // gate|up and SiLU-mul (matmul_silu_mul): one GEMM call, x read once, act written.
        charge(n, BenchPhase::kGemm, 4 * Q * Ir * C, Q * C * g + 2 * Ir * C * w + Q * Ir * g);
        if (l + 1 == c.num_hidden_layers) {
            matmul(Q, C, Ir, g);
            charge(n, BenchPhase::kOther, Q * C, 3 * Q * C * f);  // the last MLP residual
        } else if (s.tp > 1) {
            matmul(Q, C, Ir, g);  // the next layer's first norm adds it (add_rmsnorm)
        } else {
            matmul_add_rmsnorm(Q, C, Ir, g);  // down_proj and the next layer's first norm
        }
    }
    charge(n, BenchPhase::kOther, 4 * C, 2 * C * f + C * f);  // final norm of the last row
    matmul(1, Vr, C, f);                                      // lm_head, last row (f32 input)
    if (tp_calls > 0) charge(n, BenchPhase::kTpAllreduce, 0, Q * C * f, tp_calls);
    n[BenchPhase::kWait].calls =
        n[BenchPhase::kTpAllreduce].calls + n[BenchPhase::kMpAllgather].calls;
    return n;
}

void calibrate_rates(Calibration& cal, Retrieval r, const std::vector<StepShape>& shapes,
                     const std::vector<PhaseCounts>& measured) {
    FOT_CHECK(!shapes.empty() && shapes.size() == measured.size(),
              "calibrate_rates: ", shapes.size(), " shapes for ", measured.size(), " measurements");
    std::vector<PhaseCounts> counts;
    for (const StepShape& s : shapes) counts.push_back(step_counts(s));
    const double rows = heads_rows(shapes[0]);
    auto& rate = cal.rate[r == Retrieval::kTopK ? 1 : 0];
    auto& per_row = cal.per_row[r == Retrieval::kTopK ? 1 : 0];
    for (int i = 0; i < kBenchPhases; ++i) {
        const BenchPhase p = static_cast<BenchPhase>(i);
        if (!is_compute_phase(p)) continue;
        std::vector<double> w, t;
        double lo = 0, hi = 0;
        for (size_t j = 0; j < counts.size(); ++j) {
            w.push_back(is_flop_phase(p) ? counts[j][p].flops : counts[j][p].bytes);
            t.push_back(measured[j][p].seconds);
            lo = j == 0 ? w.back() : std::min(lo, w.back());
            hi = std::max(hi, w.back());
        }
        double sw = 0, st = 0, sww = 0, swt = 0;
        const double n = double(w.size());
        for (size_t j = 0; j < w.size(); ++j) {
            sw += w[j];
            st += t[j];
            sww += w[j] * w[j];
            swt += w[j] * t[j];
        }
        rate[i] = sw > 0 && st > 0 ? sw / st : 0;
        per_row[i] = 0;
        const int64_t calls = counts[0][p].calls;
        if (w.size() < 2 || calls == 0 || hi - lo < 0.2 * hi) continue;
        const double inv = (n * swt - sw * st) / (n * sww - sw * sw);  // seconds per work
        const double fixed = (st - inv * sw) / n / double(calls);
        if (inv > 0 && fixed >= 0) {
            rate[i] = 1 / inv;
            per_row[i] = fixed / rows;
        }
    }
}

void pool_mode_independent_rates(Calibration& cal, bool use_min) {
    for (BenchPhase p : {BenchPhase::kGemm, BenchPhase::kLocalAttn, BenchPhase::kOther}) {
        const int i = static_cast<int>(p);
        double& d = cal.rate[0][i];
        double& t = cal.rate[1][i];
        // Per-row fixed parts are fitted with the rate; pool only plain rates.
        if (d <= 0 || t <= 0 || cal.per_row[0][i] != 0 || cal.per_row[1][i] != 0) continue;
        d = t = use_min ? std::max(d, t) : (d + t) / 2;
    }
}

PhaseCounts predict_step(const StepShape& s, const Calibration& cal) {
    PhaseCounts out = step_counts(s);
    const int m = s.retrieval == Retrieval::kTopK ? 1 : 0;
    for (int i = 0; i < kBenchPhases; ++i) {
        const BenchPhase p = static_cast<BenchPhase>(i);
        if (!is_compute_phase(p)) continue;
        const double work = is_flop_phase(p) ? out[p].flops : out[p].bytes;
        // A phase the calibration never saw borrows the dense mode's rate, else stays
        // unpredicted (0).
        const int use = cal.rate[m][i] > 0 ? m : 0;
        const double r = cal.rate[use][i];
        out[p].seconds = work > 0 && r > 0
                             ? work / r + double(out[p].calls) * heads_rows(s) * cal.per_row[use][i]
                             : 0;
    }
    predict_collectives(out, s, cal.alpha, cal.beta, cal.alpha, cal.beta, cal.barrier);
    return out;
}

const std::vector<Hardware>& hardware_presets() {
    // Sustained rates of fotrt's own CUDA kernels, measured with fot_gpu_bench on the lent
    // H200 (docs/performance.md, "GPU backend"): GEMMs 520 TFLOP/s, memory attention
    // 110 TFLOP/s, local attention 68 TFLOP/s, bandwidth-bound kernels ~1.4 TB/s. The H100
    // has the same tensor-core peak and 3.35 / 4.8 of the H200's memory bandwidth. Links:
    // NVLink 4 (900 GB/s per GPU both ways; ~360 GB/s per direction achieved by NCCL rings,
    // alpha 8 us); InfiniBand NDR 400 Gb/s per GPU (~45 GB/s achieved, alpha 15 us).
    static const std::vector<Hardware> list = {
        {"h100-nvlink-ib",
         "8x H100 SXM 80 GB per node, NVLink 4 inside a node, 1x NDR 400 Gb/s IB per GPU", 520e12,
         110e12, 68e12, 1.4e12 * 3.35 / 4.8, 80e9, 8, 8e-6, 1 / 360e9, 15e-6, 1 / 45e9},
        {"h200-nvlink-ib",
         "8x H200 SXM 141 GB per node, NVLink 4 inside a node, 1x NDR 400 Gb/s IB per GPU", 520e12,
         110e12, 68e12, 1.4e12, 141e9, 8, 8e-6, 1 / 360e9, 15e-6, 1 / 45e9},
    };
    return list;
}

const Hardware* find_hardware(const std::string& name) {
    for (const Hardware& h : hardware_presets()) {
        if (h.name == name) return &h;
    }
    return nullptr;
}

PhaseCounts project_step(const StepShape& s, const Hardware& hw) {
    PhaseCounts out = step_counts(s);
    for (int i = 0; i <= static_cast<int>(BenchPhase::kOther); ++i) {
        const BenchPhase p = static_cast<BenchPhase>(i);
        const double flops_rate = p == BenchPhase::kGemm        ? hw.gemm_flops
                                  : p == BenchPhase::kLocalAttn ? hw.local_attn_flops
                                                                : hw.attn_flops;
        out[p].seconds = std::max(out[p].flops / flops_rate, out[p].bytes / hw.hbm_bytes);
    }
    // tp stays inside a node; an mp group spans nodes once tp x mp exceeds a node.
    const bool mp_inter = s.tp * s.mp > hw.gpus_per_node;
    predict_collectives(out, s, hw.intra_alpha, hw.intra_beta,
                        mp_inter ? hw.inter_alpha : hw.intra_alpha,
                        mp_inter ? hw.inter_beta : hw.intra_beta, 0);
    out[BenchPhase::kWait].seconds = 0;
    return out;
}

double rank_bytes(const StepShape& s) {
    const double params = double(s.model.parameter_count());
    const double weights = params / s.tp * double(dtype_size(s.weights));
    const double per_token = double(s.model.memory_bytes_per_token(s.mem_dtype)) / s.tp;
    return weights + per_token * double(memory_tokens_on_rank(s, 0));
}

}  // namespace fot
