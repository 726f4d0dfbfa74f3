// Precision modes of the compute path (docs/architecture.md §7).
//
//  - kExact: fp32 activations, fp32 GEMM inputs for f32 weights, fp32 attention operands and
//    f32 local caches. The golden contract: matches the reference PyTorch float32 run to ~1e-4.
//  - kFast: what bf16 checkpoints are made for: GEMM and attention *operands* are bf16
//    (rounded to nearest even), products accumulate in fp32, softmax statistics (running max,
//    sum of exponentials) are fp32, the residual stream stays fp32, local key/value caches are
//    stored in bf16. In attention, the probabilities p = exp(s - m) are summed into l in fp32
//    and rounded to bf16 only as the operand of the P.V product. Both backends implement the
//    same roundings, so CudaBackend is tested against CpuBackend in this mode too. Yardstick:
//    golden case_h (no worse than the reference's own bf16 run).
// Default: kFast for bf16/f16 checkpoints, kExact for f32 checkpoints.
#pragma once

#include <string_view>

namespace fot {

enum class Precision { kExact, kFast };

inline const char* precision_name(Precision p) {
    return p == Precision::kFast ? "fast" : "exact";
}

// "exact" or "fast"; false for anything else.
inline bool parse_precision(std::string_view s, Precision* out) {
    if (s == "exact") {
        *out = Precision::kExact;
        return true;
    }
    if (s == "fast") {
        *out = Precision::kFast;
        return true;
    }
    return false;
}

}  // namespace fot
