// Loading at memory speed ([F14]): weights used in place from the file mapping are the same
// bytes as copied ones, for every checkpoint format, dtype, precision and tp slice; an
// unaligned safetensors file falls back to copies; in-place weights outlive the Checkpoint;
// and the logits do not change. (Peak RSS is checked by io_load_memory_test, in a fresh
// process per load.)
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "parallel/self_communicator.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/io/checkpoint.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/weights.h"
#include "tests/model/golden_util.h"

namespace fot {
namespace {

namespace fs = std::filesystem;
using testing::golden_dir;
using testing::read_ids;

std::vector<const Buffer*> all_buffers(const ModelWeights& w) {
    std::vector<const Buffer*> v = {&w.embed, &w.norm, &w.lm_head};
    for (const LayerWeights& L : w.layers) {
        for (const Buffer* b :
             {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.ln_in, &L.ln_post}) {
            v.push_back(b);
        }
    }
    return v;
}

void expect_same_bytes(const ModelWeights& a, const ModelWeights& b, const std::string& what) {
    const auto x = all_buffers(a), y = all_buffers(b);
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(a.bytes, b.bytes) << what;
    for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(x[i]->dtype(), y[i]->dtype()) << what << " buffer " << i;
        ASSERT_EQ(x[i]->shape(), y[i]->shape()) << what << " buffer " << i;
        EXPECT_EQ(std::memcmp(x[i]->data(), y[i]->data(), x[i]->nbytes()), 0)
            << what << " buffer " << i;
    }
}

// Last-row logits of a forward over `ids`.
std::vector<float> logits(const ModelConfig& c, ModelWeights w, CpuBackend& backend,
                          Precision precision, const std::vector<int32_t>& ids) {
    parallel::SelfCommunicator self;
    ModelOptions mo;
    mo.mem_dtype = c.mem_dtype;
    mo.last_context_length = c.last_context_length;
    mo.precision = precision;
    LongLlama model(c, std::move(w), backend, self, self, mo);
    Sequence seq = model.new_sequence();
    std::vector<float> out;
    ForwardOptions fo;
    fo.logits = LogitsRows::kAll;
    fo.on_logits = [&](int64_t, TensorView v) {
        out.insert(out.end(), v.as<float>(), v.as<float>() + v.numel());
    };
    model.forward(seq, ids, fo);
    return out;
}

struct Case {
    std::string dir;
    bool expect_in_place;  // some tensor is aligned for its dtype in this file
};

class LoadInPlace : public ::testing::TestWithParam<Case> {};

TEST_P(LoadInPlace, SameBytesAndLogitsAsCopies) {
    const std::string dir = GetParam().dir;
    const ModelConfig c = load_model_config(dir + "/config.json").value();
    const auto ids = read_ids(golden_dir("case_a") + "/input_ids.json");
    CpuBackend backend(1);
    for (Precision p : {Precision::kExact, Precision::kFast}) {
        backend.set_precision(p);
        for (int tp : {1, 2}) {
            for (int rank = 0; rank < tp; ++rank) {
                const std::string what = dir + " " + precision_name(p) + " tp " +
                                         std::to_string(tp) + "/" + std::to_string(rank);
                ModelWeights in_place, copied;
                {
                    // The Checkpoint goes away before the weights are used: in-place weights
                    // must keep the mapping alive on their own.
                    auto ckpt = Checkpoint::open(dir);
                    in_place = load_model_weights(*ckpt, c, backend, rank, tp, p, true);
                    copied = load_model_weights(*ckpt, c, backend, rank, tp, p, false);
                }
                EXPECT_EQ(copied.mapped_bytes, 0) << what;
                if (GetParam().expect_in_place) {
                    EXPECT_GT(in_place.mapped_bytes, 0) << what;
                } else {
                    EXPECT_EQ(in_place.mapped_bytes, 0) << what;
                }
                expect_same_bytes(in_place, copied, what);
                if (tp == 1) {
                    const auto a = logits(c, std::move(in_place), backend, p, ids);
                    const auto b = logits(c, std::move(copied), backend, p, ids);
                    ASSERT_EQ(a.size(), b.size());
                    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << what;
                }
            }
        }
    }
}

// case_a's safetensors file with its data section moved to an odd offset: nothing can be used
// in place (f32 needs 4-byte alignment), everything is copied, the logits are the same.
std::string unaligned_case_a(const std::string& tmp) {
    const std::string src = golden_dir("case_a");
    fs::create_directories(tmp);
    fs::copy_file(src + "/config.json", tmp + "/config.json", fs::copy_options::overwrite_existing);
    std::ifstream in(src + "/model.safetensors", std::ios::binary);
    std::vector<char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(b[static_cast<size_t>(i)]);
    std::string header(b.begin() + 8, b.begin() + 8 + static_cast<ptrdiff_t>(n));
    while ((8 + header.size()) % 4 != 1) header.push_back(' ');
    std::ofstream out(tmp + "/model.safetensors", std::ios::binary | std::ios::trunc);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((header.size() >> (8 * i)) & 0xff));
    out << header;
    out.write(b.data() + 8 + n, static_cast<std::streamsize>(b.size() - 8 - n));
    return tmp;
}

struct TempDir {
    std::string path =
        (fs::temp_directory_path() / ("fot_load_test_" + std::to_string(::getpid()))).string();
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

TEST(LoadInPlace, UnalignedSafetensorsIsCopiedWithTheSameLogits) {
    TempDir tmp;
    const std::string dir = unaligned_case_a(tmp.path);
    const ModelConfig c = load_model_config(dir + "/config.json").value();
    const auto ids = read_ids(golden_dir("case_a") + "/input_ids.json");
    CpuBackend backend(1);
    auto bad = Checkpoint::open(dir);
    auto good = Checkpoint::open(golden_dir("case_a"));
    ModelWeights a = load_model_weights(*bad, c, backend, 0, 1, Precision::kExact, true);
    ModelWeights b = load_model_weights(*good, c, backend, 0, 1, Precision::kExact, true);
    EXPECT_EQ(a.mapped_bytes, 0);
    EXPECT_GT(b.mapped_bytes, 0);
    expect_same_bytes(a, b, "unaligned vs aligned case_a");
    const auto la = logits(c, std::move(a), backend, Precision::kExact, ids);
    const auto lb = logits(c, std::move(b), backend, Precision::kExact, ids);
    ASSERT_EQ(la.size(), lb.size());
    EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * 4), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, LoadInPlace,
    ::testing::Values(Case{golden_dir("case_a"), true},
                      Case{golden_dir("checkpoints/pytorch_fp32"), true},
                      Case{golden_dir("checkpoints/pytorch_bf16_sharded"), true},
                      Case{golden_dir("checkpoints/safetensors_bf16_sharded"), true}),
    [](const ::testing::TestParamInfo<Case>& i) {
        std::string n = fs::path(i.param.dir).filename().string();
        for (char& ch : n) {
            if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
        }
        return n;
    });

}  // namespace
}  // namespace fot
