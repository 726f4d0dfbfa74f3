// The Backend conformance suite (runtime/backend/backend.h), written once and instantiated per
// backend, as tests/parallel/communicator_conformance.h is for communicators:
//   kernels_backend_conformance_cpu            CpuBackend (always built)
//   kernels_backend_conformance_cuda_emulated  CudaBackend on the CUDA emulator (kernels/cuda/emu)
//   kernels_backend_conformance_cuda           CudaBackend on a GPU (label gpu; skips without one)
// Every op runs on random seeded data over the shapes the model uses (head dims 16/64/100/
// 128, one to thousands of queries, sizes off every tile, causal and not, f32/bf16/f16
// stores, exact and fast precision where they differ) and is compared with a reference:
//  - results the contract fixes bit for bit (copies, gathers, the bf16/f16 roundings of the
//    stores, the top-k threshold, fp32 additions, maxima) with the naive value itself
//    (backend_reference.h), for every backend;
//  - everything else, on CpuBackend, with the naive references, and on any other backend
//    with CpuBackend in the same precision (the tightest reference: two fp32 implementations
//    that differ in summation order only), except the fast attention, which every backend
//    matches against the naive rules (the contract leaves its key blocks to the backend).
// Tolerances are a table in backend_conformance.cpp, each entry with the reason for its size.
// Two checks need no reference: kFast changes no op but matmul and attn_accumulate (bit for
// bit), and every op refuses an output view of another device. What is specific to one
// backend and not an op (CudaBackend's extras, allocation counts, the emulator's fault
// injection) lives in that backend's own test file (cuda_backend_test.cpp).
//
// Test names: Conformance/<Suite>.<Test>/<maker>[_<case>] (ctest adds "emulated." in front
// for the emulator's executable), e.g.
// Conformance/BackendOps.RmsNorm/cpu,
// Conformance/BackendAttention.ModelSequence/cuda_exact_D64_T3_at5_S1000_f32_f32_H2.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/backend/backend.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/core/dtype.h"
#include "runtime/core/precision.h"

namespace fot::testing {

struct BackendMaker {
    // The backend's name in test names: cpu, cuda_emulated, cuda.
    std::string name;
    // A fresh backend, or null with *why_not set when this machine has none (the test skips).
    std::function<std::unique_ptr<Backend>(std::string* why_not)> make;
    // Compare with the naive references instead of CpuBackend: set for CpuBackend itself.
    bool naive_reference = false;
    // Leave out the cases marked heavy: the CUDA emulator runs every CUDA thread as a fiber,
    // so the largest shapes would take minutes there (they run on the CPU and on a GPU).
    bool reduced = false;
    // The type matmul rounds x to before multiplying weights of type w in precision p (f32:
    // no rounding). The Backend contract: kExact none, kFast bf16 (CpuBackend: f16 for f16
    // weights). CudaBackend documents a deviation (cuda_backend.h, kernels/cuda/blas.h).
    std::function<DType(DType w, Precision p)> matmul_x_operand;
};

inline void PrintTo(const BackendMaker& m, std::ostream* os) {
    *os << m.name;
}

// CpuBackend's maker (the naive references are its reference).
BackendMaker cpu_backend_maker();

// One attention case: the model's sequence init, local causal part over keys [0, at + T) of
// an f32/bf16 local store, memory part (no mask) over S_mem rows of the memory store,
// finalize; in one precision. heavy: left out on reduced makers (each heavy case has a
// smaller twin that exercises the same kernel path).
struct AttnCase {
    Precision precision;
    int64_t D, T, at, S_mem;
    DType local, mem;
    int64_t H = 2;
    bool heavy = false;
};
std::ostream& operator<<(std::ostream& os, const AttnCase& c);

// One memory_topk case: K best of S rows for T queries (H = 2); identical_keys: every score
// ties, so the order is by position only.
struct TopkCase {
    int64_t D, T, S, K;
    DType dtype;
    bool identical_keys = false;
};
std::ostream& operator<<(std::ostream& os, const TopkCase& c);

// Runs case c (the model's sequence) on backend b and compares it with the naive rules, with
// the suite's tolerances for c's precision. (The emulator's fault-injection test uses it.)
::testing::AssertionResult attention_matches_naive(Backend& b, const AttnCase& c);

std::vector<std::tuple<BackendMaker, AttnCase>> attention_params(const BackendMaker& m);
std::vector<std::tuple<BackendMaker, TopkCase>> topk_params(const BackendMaker& m);

std::string ops_param_name(const ::testing::TestParamInfo<BackendMaker>& info);
std::string attention_param_name(
    const ::testing::TestParamInfo<std::tuple<BackendMaker, AttnCase>>& info);
std::string topk_param_name(
    const ::testing::TestParamInfo<std::tuple<BackendMaker, TopkCase>>& info);

// The backend under test and the CpuBackend reference, made fresh for every test.
class ConformanceFixture {
  protected:
    // Makes the backend under test; false with *why_not set when the maker cannot here.
    bool start(const BackendMaker& maker, std::string* why_not);
    Backend& be() { return *be_; }
    CpuBackend& cpu() { return cpu_; }
    const BackendMaker& maker() const { return maker_; }
    bool naive() const { return maker_.naive_reference; }

  private:
    BackendMaker maker_;
    std::unique_ptr<Backend> be_;
    CpuBackend cpu_;
};

// Ops over shapes looped inside each test.
class BackendOps : public ::testing::TestWithParam<BackendMaker>, public ConformanceFixture {
  protected:
    void SetUp() override {
        std::string why;
        if (!start(GetParam(), &why)) GTEST_SKIP() << why;
    }
};

// attn_partial_init / attn_accumulate / attn_partial_finalize per AttnCase.
class BackendAttention : public ::testing::TestWithParam<std::tuple<BackendMaker, AttnCase>>,
                         public ConformanceFixture {
  protected:
    void SetUp() override {
        std::string why;
        if (!start(std::get<0>(GetParam()), &why)) GTEST_SKIP() << why;
    }
};

// memory_topk per TopkCase.
class BackendTopk : public ::testing::TestWithParam<std::tuple<BackendMaker, TopkCase>>,
                    public ConformanceFixture {
  protected:
    void SetUp() override {
        std::string why;
        if (!start(std::get<0>(GetParam()), &why)) GTEST_SKIP() << why;
    }
};

}  // namespace fot::testing

// Instantiates the whole suite for one maker; use inside namespace fot::testing.
#define FOT_INSTANTIATE_BACKEND_CONFORMANCE(maker)                                         \
    INSTANTIATE_TEST_SUITE_P(Conformance, BackendOps, ::testing::Values(maker),            \
                             ::fot::testing::ops_param_name);                              \
    INSTANTIATE_TEST_SUITE_P(Conformance, BackendAttention,                                \
                             ::testing::ValuesIn(::fot::testing::attention_params(maker)), \
                             ::fot::testing::attention_param_name);                        \
    INSTANTIATE_TEST_SUITE_P(Conformance, BackendTopk,                                     \
                             ::testing::ValuesIn(::fot::testing::topk_params(maker)),      \
                             ::fot::testing::topk_param_name)
