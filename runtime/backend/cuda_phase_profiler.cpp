#include "runtime/backend/cuda_phase_profiler.h"

#include <cuda_runtime_api.h>

#include <algorithm>

#include "kernels/cuda/check.h"

namespace fot {

const char* phase_name(Phase p) {
    switch (p) {
        case Phase::kGemm:
            return "GEMMs";
        case Phase::kLocalAttention:
            return "local attention";
        case Phase::kMemoryAttention:
            return "memory attention";
        case Phase::kTopk:
            return "top-k";
        case Phase::kOther:
            return "other";
        case Phase::kCount:
            break;
    }
    return "?";
}

PhaseProfiler::PhaseProfiler(void* stream) : stream_(stream) {}

PhaseProfiler::~PhaseProfiler() {
    for (Slot& s : slots_) {
        cudaEventDestroy(static_cast<cudaEvent_t>(s.start));
        cudaEventDestroy(static_cast<cudaEvent_t>(s.stop));
    }
}

namespace {
OpStat& op_line(std::vector<OpStat>& ops, const std::string& op, Phase phase) {
    for (OpStat& o : ops) {
        if (o.phase == phase && o.op == op) return o;
    }
    ops.push_back({op, phase, {}});
    return ops.back();
}
}  // namespace

size_t PhaseProfiler::begin(Phase phase, double flops, double bytes, const char* op) {
    if (used_ == slots_.size()) {
        Slot s;
        cudaEvent_t a = nullptr, b = nullptr;
        FOT_CUDA_CHECK(cudaEventCreate(&a));
        FOT_CUDA_CHECK(cudaEventCreate(&b));
        s.start = a;
        s.stop = b;
        slots_.push_back(s);
    }
    Slot& s = slots_[used_];
    s.phase = phase;
    s.op = op;
    for (PhaseStat* st :
         {&pending_[static_cast<size_t>(phase)], &op_line(pending_ops_, op, phase).stat}) {
        ++st->calls;
        st->flops += flops;
        st->bytes += bytes;
    }
    FOT_CUDA_CHECK(
        cudaEventRecord(static_cast<cudaEvent_t>(s.start), static_cast<cudaStream_t>(stream_)));
    return used_++;
}

void PhaseProfiler::end(size_t slot) {
    FOT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(slots_[slot].stop),
                                   static_cast<cudaStream_t>(stream_)));
}

PhaseStats PhaseProfiler::take() {
    FOT_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
    PhaseStats out = pending_;
    for (size_t i = 0; i < used_; ++i) {
        float ms = 0.f;
        FOT_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(slots_[i].start),
                                            static_cast<cudaEvent_t>(slots_[i].stop)));
        out[static_cast<size_t>(slots_[i].phase)].seconds += 1e-3 * ms;
        op_line(pending_ops_, slots_[i].op, slots_[i].phase).stat.seconds += 1e-3 * ms;
    }
    used_ = 0;
    pending_ = {};
    ops_.swap(pending_ops_);
    pending_ops_.clear();
    std::sort(ops_.begin(), ops_.end(),
              [](const OpStat& a, const OpStat& b) { return a.stat.seconds > b.stat.seconds; });
    return out;
}

}  // namespace fot
