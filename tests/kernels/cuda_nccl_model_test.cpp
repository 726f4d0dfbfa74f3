// Tensor- and memory-parallel layouts on GPUs with NCCL collectives (mpirun -np 2 / 4, label
// gpu): every tp x mp layout of the golden models runs the CUDA backend with NCCL tp/mp
// communicators, dense and exact top-k (k >= memory), and must give the single-rank reference
// logits within 1e-4 on every rank.
// Skips on every rank alike when the node has fewer GPUs than ranks.
#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

#include "config/model_config.h"
#include "kernels/cuda/ops.h"
#include "parallel/mpi_session.h"
#include "parallel/nccl_communicator.h"
#include "parallel/world.h"
#include "runtime/backend/cuda_backend.h"
#include "runtime/io/checkpoint.h"
#include "runtime/model/long_llama.h"
#include "runtime/model/weights.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/model/golden_util.h"

namespace fot {
namespace {

using parallel::Communicator;

// Logits [n, V] of one forward over the golden input with layout (tp, mp).
std::vector<float> run_layout(Communicator& boot, const std::string& dir, int tp, int mp, int gpus,
                              Retrieval retrieval) {
    const ModelConfig mc = load_model_config(dir + "/config.json").value();
    parallel::World w(boot.size(), boot.rank(), tp, mp,
                      std::max(0, parallel::local_rank_from_env()));
    const int device =
        parallel::select_cuda_device(parallel::node_info(), gpus, boot.size() > 1).device;
    CudaBackend backend(device);
    auto nccl_world = parallel::make_nccl_communicator(boot, device);
    nccl_world->set_timeout(120);
    parallel::GroupCommunicators nccl = parallel::make_group_communicators(w, *nccl_world);
    parallel::GroupCommunicators host = parallel::make_group_communicators(w, boot);
    auto ckpt = Checkpoint::open(dir);
    ModelOptions mo;
    mo.mem_dtype = mc.mem_dtype;
    mo.last_context_length = mc.last_context_length;
    mo.retrieval = retrieval;
    mo.k = 4096;  // >= the golden memories: top-k equals dense (scores/positions all-gathered)
    LongLlama model(mc, load_model_weights(*ckpt, mc, backend, w.tp_rank(), tp), backend, *nccl.tp,
                    *nccl.mp, mo);
    EXPECT_STREQ(nccl.tp->backend_name(), "nccl");
    EXPECT_STREQ(nccl.mp->backend_name(), "nccl");

    const auto ids = testing::read_ids(dir + "/input_ids.json");
    std::vector<float> logits;
    ForwardOptions fo;
    fo.logits = LogitsRows::kAll;
    fo.on_logits = [&](int64_t, TensorView local) {
        const int64_t rows = local.shape[0], vr = local.shape[1];
        std::vector<float> mine(static_cast<size_t>(rows * vr));
        backend.download(mine.data(), local, mine.size() * sizeof(float));
        std::vector<float> all(mine.size() * tp);
        host.tp->all_gather(parallel::host_view(mine.data(), static_cast<int64_t>(mine.size())),
                            parallel::host_view(all.data(), static_cast<int64_t>(all.size())));
        for (int64_t i = 0; i < rows; ++i) {
            for (int r = 0; r < tp; ++r) {
                const float* src = all.data() + (static_cast<int64_t>(r) * rows + i) * vr;
                logits.insert(logits.end(), src, src + vr);
            }
        }
    };
    Sequence seq = model.new_sequence();
    model.forward(seq, ids, fo);
    return logits;
}

TEST(CudaNcclModel, EveryLayoutMatchesTheReference) {
    auto boot = parallel::make_mpi_world_communicator();
    boot->set_timeout(120);
    const int gpus = kernels::cuda::device_count();
    if (gpus < boot->size()) {
        GTEST_SKIP() << "needs one GPU per rank: " << gpus << " GPU(s), " << boot->size()
                     << " rank(s)";
    }
    const int P = boot->size();
    for (const char* name : {"case_a", "case_f"}) {
        const std::string dir = testing::cuda_golden_dir(name);
        const ModelConfig mc = load_model_config(dir + "/config.json").value();
        const auto ref = testing::read_f32(dir + "/logits.f32");
        for (int tp = 1; tp <= P; tp *= 2) {
            const int mp = P / tp;
            if (tp * mp != P || mc.num_attention_heads % tp || mc.intermediate_size % tp ||
                mc.vocab_size % tp) {
                continue;
            }
            for (Retrieval r : {Retrieval::kDense, Retrieval::kTopK}) {
                SCOPED_TRACE(::testing::Message()
                             << name << " tp=" << tp << " mp=" << mp << " " << retrieval_name(r));
                const auto logits = run_layout(*boot, dir, tp, mp, gpus, r);
                ASSERT_EQ(logits.size(), ref.size());
                EXPECT_LT(testing::max_abs_diff(logits, ref), 1e-4);
            }
        }
    }
}

}  // namespace
}  // namespace fot
