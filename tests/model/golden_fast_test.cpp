// Golden case_h (head_dim 100, the 3B shape): the exact path against the reference's fp32
// logits, and Precision::kFast on the bf16 model against the yardstick of the reference's own
// bf16 run (tests/data/golden/README.md, "case_h"). The bf16 checkpoint is derived at test time
// with the `fotrt convert --dtype bf16` code path (convert_checkpoint) into a temp dir.
// Compiled twice: for CpuBackend (tests/model) and, with FOT_CASE_H_BACKEND="cuda", for
// CudaBackend (tests/kernels: on a GPU, and under the CUDA emulator in CI).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "runtime/io/convert.h"
#include "runtime/jobs/session.h"
#include "tests/model/golden_checks.h"

#ifndef FOT_CASE_H_BACKEND
#define FOT_CASE_H_BACKEND "cpu"
#endif

namespace fot {
namespace {

namespace fs = std::filesystem;

// A run on the backend this file is compiled for.
RunConfig on_backend(RunConfig run = {}) {
    run.backend = FOT_CASE_H_BACKEND;
    return run;
}
using testing::argmax_rows;
using testing::forward_all;
using testing::golden_dir;
using testing::max_abs_diff;
using testing::read_f32;
using testing::read_ids;
using testing::read_json;

double argmax_agreement(const std::vector<float>& a, const std::vector<float>& b, int64_t V) {
    const auto x = argmax_rows(a, V), y = argmax_rows(b, V);
    EXPECT_EQ(x.size(), y.size());
    int64_t same = 0;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) same += x[i] == y[i];
    return x.empty() ? 0.0 : static_cast<double>(same) / static_cast<double>(x.size());
}

class CaseH : public ::testing::Test {
  protected:
    void SetUp() override {
        if (backend_device_count(FOT_CASE_H_BACKEND) == 0)
            GTEST_SKIP() << "no " << FOT_CASE_H_BACKEND << " device";
    }
    // case_h's weights rounded to bf16 (nearest even) as a bf16 safetensors checkpoint: the
    // bytes of the reference's case_h model_bf16/ (tests/data/golden/README.md).
    static void SetUpTestSuite() {
        bf16_dir_ = new std::string(
            (fs::temp_directory_path() / ("fot_case_h_bf16_" + std::to_string(::getpid())))
                .string());
        ConvertOptions o;
        o.from = golden_dir("case_h");
        o.to = *bf16_dir_;
        o.dtype = DType::kBF16;
        o.force = true;
        convert_checkpoint(o);
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        fs::remove_all(*bf16_dir_, ec);
        delete bf16_dir_;
        bf16_dir_ = nullptr;
    }

    static std::string* bf16_dir_;
    const std::string dir_ = golden_dir("case_h");
    const std::vector<int32_t> ids_ = read_ids(dir_ + "/input_ids.json");
    const std::vector<float> ref_f32_ = read_f32(dir_ + "/logits_f32.f32");
    const nlohmann::json summary_ = read_json(dir_ + "/summary.json");
    static constexpr int64_t kV = 512;

    // The yardstick, from summary.json (the reference's bf16 run vs its fp32 run).
    double max_diff_bound() const {
        return summary_.value("bf16_vs_f32_max_abs_logit_diff", 0.140);
    }
    double agreement_bound() const { return summary_.value("bf16_vs_f32_argmax_agreement", 0.963); }

    // Checks the fast logits against the yardstick and reports the figures.
    void check_fast(const std::vector<float>& logits, const char* what) {
        ASSERT_EQ(logits.size(), ref_f32_.size());
        const double d = max_abs_diff(logits, ref_f32_);
        const double agree = argmax_agreement(logits, ref_f32_, kV);
        const double d_ref_bf16 = max_abs_diff(logits, read_f32(dir_ + "/logits_bf16.f32"));
        std::cout << "case_h fast (" << what << "): max |diff| vs logits_f32 = " << d << " (bound "
                  << max_diff_bound() << "), argmax agreement = " << agree << " (bound "
                  << agreement_bound() << "); max |diff| vs the reference's bf16 "
                  << "run = " << d_ref_bf16 << "\n";
        RecordProperty(std::string(what) + "_max_abs_diff", std::to_string(d));
        RecordProperty(std::string(what) + "_argmax_agreement", std::to_string(agree));
        EXPECT_LE(d, max_diff_bound());
        EXPECT_GE(agree, agreement_bound());
    }
};
std::string* CaseH::bf16_dir_ = nullptr;

TEST_F(CaseH, ExactMatchesF32ReferenceEverywhere) {
    auto m = testing::open_golden_model(dir_, on_backend());  // f32 checkpoint: exact by default
    EXPECT_EQ(m->session->backend->precision(), Precision::kExact);
    const auto logits = forward_all(*m->session, ids_);
    ASSERT_EQ(logits.size(), ref_f32_.size());
    const double d = max_abs_diff(logits, ref_f32_);
    std::cout << "case_h exact: max |diff| vs logits_f32 = " << d << "\n";
    EXPECT_LT(d, 1e-4);
    EXPECT_EQ(argmax_rows(logits, kV), argmax_rows(ref_f32_, kV));
}

TEST_F(CaseH, FastOnBf16ModelIsAsCloseAsTheReferenceBf16Run) {
    auto m = testing::open_golden_model(*bf16_dir_, on_backend());  // bf16: fast by default
    Session& s = *m->session;
    EXPECT_EQ(s.backend->precision(), Precision::kFast);
    EXPECT_EQ(s.model->options().precision, Precision::kFast);
    EXPECT_EQ(s.model->weights().layers[0].wq.dtype(), DType::kBF16);
    check_fast(forward_all(s, ids_), "bf16_model");
}

TEST_F(CaseH, FastOnF32ModelConvertsLinearWeightsToBf16) {
    RunConfig run = on_backend();
    run.precision = Precision::kFast;
    auto m = testing::open_golden_model(dir_, run);
    const ModelWeights& w = m->session->model->weights();
    for (const LayerWeights& l : w.layers) {
        for (const Buffer* b : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
            EXPECT_EQ(b->dtype(), DType::kBF16);
        }
        EXPECT_EQ(l.ln_in.dtype(), DType::kF32);
        EXPECT_EQ(l.ln_post.dtype(), DType::kF32);
    }
    EXPECT_EQ(w.lm_head.dtype(), DType::kBF16);
    EXPECT_EQ(w.embed.dtype(), DType::kF32);  // not a GEMM operand
    EXPECT_EQ(w.norm.dtype(), DType::kF32);
    check_fast(forward_all(*m->session, ids_), "f32_model");
}

TEST_F(CaseH, ExactOnBf16ModelIsTheF32EngineOnRoundedWeights) {
    // Asked explicitly, exact mode on bf16 weights is fp32 arithmetic: far closer to the f32
    // logits than the fast path's bound only through the weights' rounding, and different
    // from the fast path.
    RunConfig run = on_backend();
    run.precision = Precision::kExact;
    auto exact = testing::open_golden_model(*bf16_dir_, run);
    EXPECT_EQ(exact->session->backend->precision(), Precision::kExact);
    auto fast = testing::open_golden_model(*bf16_dir_, on_backend());
    const auto le = forward_all(*exact->session, ids_);
    const auto lf = forward_all(*fast->session, ids_);
    EXPECT_GT(max_abs_diff(le, lf), 1e-3);
    EXPECT_LE(max_abs_diff(le, ref_f32_), max_diff_bound());
}

#if !defined(FOT_CASE_H_CUDA)
TEST(Precision, DefaultFollowsTheCheckpointWeights) {
    EXPECT_EQ(default_precision(DType::kF32), Precision::kExact);
    EXPECT_EQ(default_precision(DType::kBF16), Precision::kFast);
    EXPECT_EQ(default_precision(DType::kF16), Precision::kFast);
    auto f32 = testing::open_golden_model(golden_dir("case_a"));
    EXPECT_EQ(f32->session->backend->precision(), Precision::kExact);
    auto bf16 = testing::open_golden_model(golden_dir("checkpoints/safetensors_bf16_sharded"));
    EXPECT_EQ(bf16->session->backend->precision(), Precision::kFast);
    EXPECT_EQ(bf16->session->model->options().precision, Precision::kFast);
}
#endif

}  // namespace
}  // namespace fot
