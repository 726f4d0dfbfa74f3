#include "runtime/jobs/phase_timer.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <utility>

namespace fot {

namespace {
double nb(const TensorView& v) {
    return static_cast<double>(v.nbytes());
}
// Bytes of rows [0, S) of a head-major store [H, cap, D].
double store_bytes(const TensorView& store, int64_t S) {
    return static_cast<double>(store.shape[0]) * static_cast<double>(S) *
           static_cast<double>(store.shape[2]) * static_cast<double>(dtype_size(store.dtype));
}
// 4 x D FLOPs per (head, query, visible key): query t sees keys j <= t + causal_offset.
double attn_flops(const TensorView& part, int64_t S, int64_t causal_offset) {
    const int64_t H = part.shape[0], T = part.shape[1], D = part.shape[2] - 2;
    double pairs = 0;
    if (causal_offset >= S) {
        pairs = double(T) * double(S);
    } else {
        for (int64_t t = 0; t < T; ++t) pairs += double(std::min(S, t + causal_offset + 1));
    }
    return 4.0 * double(H) * double(D) * pairs;
}
}  // namespace

const char* bench_phase_name(BenchPhase p) {
    switch (p) {
        case BenchPhase::kGemm:
            return "gemm";
        case BenchPhase::kLocalAttn:
            return "local_attn";
        case BenchPhase::kMemScore:
            return "mem_score";
        case BenchPhase::kTopkSelect:
            return "topk_select";
        case BenchPhase::kMerge:
            return "merge";
        case BenchPhase::kOther:
            return "other";
        case BenchPhase::kTpAllreduce:
            return "tp_allreduce";
        case BenchPhase::kMpAllgather:
            return "mp_allgather";
        case BenchPhase::kWait:
            return "wait";
        case BenchPhase::kCount:
            break;
    }
    return "?";
}

double bench_clock_seconds(BenchClock c) {
    if (c == BenchClock::kCpu) {
        timespec ts{};
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

double PhaseCounts::seconds() const {
    double s = 0;
    for (const PhaseCount& c : p) s += c.seconds;
    return s;
}

// ---- TimedBackend -------------------------------------------------------------------------

TimedBackend::TimedBackend(Backend& inner, PhaseCounts& counts, BenchClock clock)
    : inner_(inner),
      counts_(counts),
      clock_(clock),
      sync_(inner.device().kind != DeviceKind::kCpu) {
    set_precision(inner.precision());
}

template <typename F>
void TimedBackend::timed(BenchPhase phase, double flops, double bytes, F&& op) {
    const double t0 = bench_clock_seconds(clock_);
    op();
    if (sync_) inner_.synchronize();
    PhaseCount& c = counts_[phase];
    c.seconds += bench_clock_seconds(clock_) - t0;
    c.flops += flops;
    c.bytes += bytes;
    ++c.calls;
}

void TimedBackend::upload(TensorView dst, const void* host_src, size_t bytes) {
    timed(BenchPhase::kOther, 0, double(bytes), [&] { inner_.upload(dst, host_src, bytes); });
}
void TimedBackend::download(void* host_dst, TensorView src, size_t bytes) {
    timed(BenchPhase::kOther, 0, double(bytes), [&] { inner_.download(host_dst, src, bytes); });
}
void TimedBackend::copy_rows(TensorView dst, int64_t dst_row, TensorView src, int64_t rows) {
    const double b = 2.0 * rows * (nb(src) / std::max<int64_t>(src.shape[0], 1));
    timed(BenchPhase::kOther, 0, b, [&] { inner_.copy_rows(dst, dst_row, src, rows); });
}
void TimedBackend::embedding(TensorView out, const int32_t* host_ids, TensorView table,
                             int64_t row_begin) {
    timed(BenchPhase::kOther, 0, 2 * nb(out),
          [&] { inner_.embedding(out, host_ids, table, row_begin); });
}
void TimedBackend::rmsnorm(TensorView out, TensorView x, TensorView w, float eps) {
    timed(BenchPhase::kOther, 4.0 * x.numel(), nb(out) + nb(x) + nb(w),
          [&] { inner_.rmsnorm(out, x, w, eps); });
}
void TimedBackend::matmul(TensorView out, TensorView x, TensorView w) {
    const double flops = 2.0 * double(out.shape[0]) * double(out.shape[1]) * double(x.shape[1]);
    timed(BenchPhase::kGemm, flops, nb(out) + nb(x) + nb(w), [&] { inner_.matmul(out, x, w); });
}
void TimedBackend::matmul_group(TensorView x, std::initializer_list<MatmulTarget> targets) {
    double flops = 0, bytes = nb(x);
    for (const MatmulTarget& t : targets) {
        flops += 2.0 * double(t.out.shape[0]) * double(t.out.shape[1]) * double(x.shape[1]);
        bytes += nb(t.out) + nb(t.w);
    }
    timed(BenchPhase::kGemm, flops, bytes, [&] { inner_.matmul_group(x, targets); });
}
void TimedBackend::matmul_silu_mul(TensorView act, TensorView gate, TensorView up, TensorView x,
                                   TensorView w_gate, TensorView w_up) {
    // Charged as a GEMM: the two matmuls' FLOPs and weights; SiLU-mul's few FLOPs go with them.
    const double flops = 4.0 * double(act.shape[0]) * double(act.shape[1]) * double(x.shape[1]);
    timed(BenchPhase::kGemm, flops, nb(x) + nb(w_gate) + nb(w_up) + nb(act),
          [&] { inner_.matmul_silu_mul(act, gate, up, x, w_gate, w_up); });
}
void TimedBackend::matmul_add_rmsnorm(TensorView xn, TensorView x, TensorView proj, TensorView a,
                                      TensorView w, TensorView norm_w, float eps) {
    // Charged as a GEMM: the matmul's FLOPs and bytes, and add_rmsnorm's with them (one op).
    const double flops = 2.0 * double(proj.shape[0]) * double(proj.shape[1]) * double(a.shape[1]);
    timed(BenchPhase::kGemm, flops + 5.0 * x.numel(),
          nb(proj) + nb(a) + nb(w) + nb(xn) + 2 * nb(x) + nb(proj) + nb(norm_w),
          [&] { inner_.matmul_add_rmsnorm(xn, x, proj, a, w, norm_w, eps); });
}
void TimedBackend::add_rmsnorm(TensorView out, TensorView x, TensorView r, TensorView w,
                               float eps) {
    // add (x read and written, r read) + rmsnorm (x read, out written, w read).
    timed(BenchPhase::kOther, 5.0 * x.numel(), nb(out) + 2 * nb(x) + nb(r) + nb(w),
          [&] { inner_.add_rmsnorm(out, x, r, w, eps); });
}
void TimedBackend::rope_store_kv(TensorView q, TensorView k, TensorView v, TensorView k_store,
                                 TensorView v_store, int64_t at, float theta, bool rotate) {
    // rope of q and k (when rotating) + two scatter_heads, as the separate ops are charged.
    const double n = double(q.shape[0]) * double(k_store.shape[0] * k_store.shape[2]);
    timed(BenchPhase::kOther, rotate ? 12 * n : 0, (rotate ? 16 * n : 0) + 2 * nb(k) + 2 * nb(v),
          [&] { inner_.rope_store_kv(q, k, v, k_store, v_store, at, theta, rotate); });
}
void TimedBackend::rope(TensorView x, int64_t H, int64_t D, int64_t first_pos, float theta) {
    const double n = double(x.shape[0]) * double(H * D);
    timed(BenchPhase::kOther, 6 * n, 8 * n, [&] { inner_.rope(x, H, D, first_pos, theta); });
}
void TimedBackend::silu_mul(TensorView out, TensorView gate, TensorView up) {
    timed(BenchPhase::kOther, 6.0 * out.numel(), nb(out) + nb(gate) + nb(up),
          [&] { inner_.silu_mul(out, gate, up); });
}
void TimedBackend::add(TensorView out, TensorView a, TensorView b) {
    timed(BenchPhase::kOther, double(out.numel()), nb(out) + nb(a) + nb(b),
          [&] { inner_.add(out, a, b); });
}
void TimedBackend::attn_partial_init(TensorView part) {
    timed(BenchPhase::kOther, 0, nb(part), [&] { inner_.attn_partial_init(part); });
}
void TimedBackend::attn_accumulate(TensorView part, TensorView q, TensorView k, TensorView v,
                                   int64_t S, float scale, int64_t causal_offset) {
    const BenchPhase phase = causal_offset >= S ? BenchPhase::kMemScore : BenchPhase::kLocalAttn;
    timed(phase, attn_flops(part, S, causal_offset),
          store_bytes(k, S) + store_bytes(v, S) + nb(q) + 2 * nb(part),
          [&] { inner_.attn_accumulate(part, q, k, v, S, scale, causal_offset); });
}
void TimedBackend::attn_one_store(TensorView out, TensorView part, TensorView q, TensorView k,
                                  TensorView v, int64_t S, float scale, int64_t causal_offset) {
    // One call, so a sweep times the one launch a real run makes; charged as attn_accumulate.
    const BenchPhase phase = causal_offset >= S ? BenchPhase::kMemScore : BenchPhase::kLocalAttn;
    timed(phase, attn_flops(part, S, causal_offset),
          store_bytes(k, S) + store_bytes(v, S) + nb(q) + nb(out),
          [&] { inner_.attn_one_store(out, part, q, k, v, S, scale, causal_offset); });
}
void TimedBackend::attn_partial_merge(TensorView out, TensorView parts) {
    timed(BenchPhase::kMerge, 3.0 * parts.numel(), nb(parts) + nb(out),
          [&] { inner_.attn_partial_merge(out, parts); });
}
void TimedBackend::attn_partial_finalize(TensorView out, TensorView part) {
    timed(BenchPhase::kOther, double(out.numel()), nb(out) + nb(part),
          [&] { inner_.attn_partial_finalize(out, part); });
}
void TimedBackend::scatter_heads(TensorView store, int64_t at, TensorView x) {
    timed(BenchPhase::kOther, 0, 2 * nb(x), [&] { inner_.scatter_heads(store, at, x); });
}
void TimedBackend::logsoftmax_parts(TensorView parts, TensorView logits,
                                    const int32_t* host_targets, int64_t vocab_begin) {
    timed(BenchPhase::kOther, 3.0 * logits.numel(), nb(logits) + nb(parts),
          [&] { inner_.logsoftmax_parts(parts, logits, host_targets, vocab_begin); });
}
void TimedBackend::memory_topk(TensorView scores, TensorView rows, TensorView positions,
                               TensorView q, TensorView k, TensorView row_pos, int64_t S,
                               float scale) {
    const int64_t H = scores.shape[0], T = scores.shape[1];
    const int64_t D = k.shape[2];
    timed(BenchPhase::kMemScore, 2.0 * double(H) * double(T) * double(S) * double(D),
          store_bytes(k, S) + nb(q) + nb(scores) + nb(rows) + nb(positions),
          [&] { inner_.memory_topk(scores, rows, positions, q, k, row_pos, S, scale); });
}
void TimedBackend::topk_threshold(TensorView thr_score, TensorView thr_pos, TensorView scores,
                                  TensorView positions) {
    timed(BenchPhase::kTopkSelect, double(scores.numel()),
          nb(scores) + nb(positions) + nb(thr_score) + nb(thr_pos),
          [&] { inner_.topk_threshold(thr_score, thr_pos, scores, positions); });
}
void TimedBackend::attn_accumulate_selected(TensorView part, TensorView v, TensorView scores,
                                            TensorView rows, TensorView positions,
                                            TensorView thr_score, TensorView thr_pos) {
    const double sel = double(scores.numel()), D = double(part.shape[2] - 2);
    timed(BenchPhase::kTopkSelect, 2.0 * sel * D,
          sel * D * double(dtype_size(v.dtype)) + nb(scores) + nb(rows) + nb(positions) +
              2 * nb(part),
          [&] {
              inner_.attn_accumulate_selected(part, v, scores, rows, positions, thr_score, thr_pos);
          });
}

// ---- TimedCommunicator ----------------------------------------------------------------------

TimedCommunicator::TimedCommunicator(parallel::Communicator& inner, PhaseCounts& counts,
                                     BenchPhase phase, std::function<void()> sync, BenchClock clock)
    : inner_(inner), counts_(counts), phase_(phase), sync_(std::move(sync)), clock_(clock) {
    timeout_s_ = inner.timeout();
    group_name_ = inner.group_name();
}

std::unique_ptr<parallel::Communicator> TimedCommunicator::split(int color, int key) const {
    return inner_.split(color, key);
}

template <typename F>
void TimedCommunicator::timed(double bytes, F&& op) {
    if (sync_) sync_();  // device work queued before the collective is not its time
    const double t0 = bench_clock_seconds(clock_);
    inner_.barrier();
    const double t1 = bench_clock_seconds(clock_);
    PhaseCount& w = counts_[BenchPhase::kWait];
    w.seconds += t1 - t0;
    ++w.calls;
    op();
    if (sync_) sync_();
    PhaseCount& c = counts_[phase_];
    c.seconds += bench_clock_seconds(clock_) - t1;
    c.bytes += bytes;
    ++c.calls;
}

void TimedCommunicator::do_all_reduce(TensorView buf, parallel::ReduceOp op, Stream s) {
    timed(nb(buf), [&] { inner_.all_reduce(buf, op, s); });
}
void TimedCommunicator::do_all_gather(TensorView in, TensorView out, Stream s) {
    timed(nb(in), [&] { inner_.all_gather(in, out, s); });
}
void TimedCommunicator::do_broadcast(TensorView buf, int root, Stream s) {
    timed(rank() == root ? nb(buf) : 0, [&] { inner_.broadcast(buf, root, s); });
}
void TimedCommunicator::do_send(TensorView buf, int peer, Stream s) {
    inner_.send(buf, peer, s);  // point to point: no barrier (the peer is not in a collective)
}
void TimedCommunicator::do_recv(TensorView buf, int peer, Stream s) {
    inner_.recv(buf, peer, s);
}
void TimedCommunicator::do_sendrecv(TensorView send_buf, int dst, TensorView recv_buf, int src,
                                    Stream s) {
    inner_.sendrecv(send_buf, dst, recv_buf, src, s);
}

}  // namespace fot
