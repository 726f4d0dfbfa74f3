// The layer GEMM inputs that rmsnorm, silu_mul and attn_partial_finalize write directly in the
// dtype the GEMM rounds them to (Backend::gemm_input_dtype; `fast` on the CPU: bf16): the
// model's logits must be the same bits as when those ops write f32 and matmul rounds.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "config/sweep_config.h"
#include "parallel/self_communicator.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/random_weights.h"

namespace fot {
namespace {

// CpuBackend that asks for f32 GEMM inputs: matmul then rounds them itself.
class F32GemmInputs : public CpuBackend {
  public:
    using CpuBackend::CpuBackend;
    DType gemm_input_dtype(DType) const override { return DType::kF32; }
};

std::vector<float> logits_of(CpuBackend& be, DType weights, int64_t memory_tokens) {
    ModelConfig c;
    EXPECT_TRUE(builtin_model_shape("tiny", &c));
    c.num_hidden_layers = 3;
    c.mem_layers = {1};
    be.set_precision(Precision::kFast);
    parallel::SelfCommunicator self;
    ModelOptions mo;
    mo.precision = Precision::kFast;
    mo.last_context_length = c.max_position_embeddings;
    LongLlama model(c, random_model_weights(c, be, weights, 11), be, self, self, mo);
    Sequence seq = model.new_sequence(0);
    model.fill_memory(seq, memory_tokens, 3);
    std::vector<int32_t> ids(40);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i * 7 % 200);
    std::vector<float> out;
    ForwardOptions fo;
    fo.logits = LogitsRows::kAll;
    fo.on_logits = [&](int64_t, TensorView lg) {
        const float* p = lg.as<float>();
        out.insert(out.end(), p, p + lg.numel());
    };
    model.forward(seq, ids, fo);
    // A decode step too (one row: the GEMV-sized matmuls).
    model.decode({&seq}, {5}, fo);
    return out;
}

TEST(GemmInputs, WritingThemInTheGemmDtypeChangesNoBit) {
    for (DType w : {DType::kBF16, DType::kF32}) {
        CpuBackend direct(1);
        F32GemmInputs rounded_by_matmul(1);
        ASSERT_EQ(direct.gemm_input_dtype(DType::kF32), DType::kF32) << "exact by default";
        const auto a = logits_of(direct, w, 300);
        ASSERT_EQ(direct.gemm_input_dtype(w), DType::kBF16) << "fast rounds GEMM inputs to bf16";
        const auto b = logits_of(rounded_by_matmul, w, 300);
        ASSERT_FALSE(a.empty());
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
            << "weights " << dtype_name(w);
    }
}

}  // namespace
}  // namespace fot
