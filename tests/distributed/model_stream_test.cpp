// The model issues every tensor- and memory-parallel collective on its backend's stream
// (docs/architecture.md §6.4: NCCL must run in order with the backend's ops, never on the
// legacy default stream). Run under mpirun -np 2: the golden cases under tp 2 and under mp 2,
// with a CPU backend that reports a fake stream handle and communicators that record the
// stream of each collective before handing it to the real (MPI) group communicator. The
// results must still match the golden logits, and every recorded collective must carry the
// backend's stream.
#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "parallel/mpi_session.h"
#include "runtime/backend/cpu_backend.h"
#include "runtime/io/checkpoint.h"
#include "runtime/jobs/session.h"
#include "tests/model/golden_checks.h"

namespace fot {
namespace {

// A recognisable, never-dereferenced handle: the CPU backend and MPI ignore streams.
Stream fake_stream() {
    static int tag;
    return Stream{&tag};
}

class FakeStreamCpuBackend final : public CpuBackend {
  public:
    using CpuBackend::CpuBackend;
    Stream stream() const override { return fake_stream(); }
};

// Records (operation, stream) of every call, then forwards it to `inner`.
class RecordingCommunicator final : public parallel::Communicator {
  public:
    struct Call {
        std::string op;
        void* stream;
    };
    explicit RecordingCommunicator(parallel::Communicator& inner) : inner_(inner) {}

    int rank() const override { return inner_.rank(); }
    int size() const override { return inner_.size(); }
    Device device() const override { return inner_.device(); }
    const char* backend_name() const override { return "recording"; }
    std::unique_ptr<Communicator> split(int, int) const override {
        FOT_THROW("RecordingCommunicator::split is not used by the model");
    }
    const std::vector<Call>& calls() const { return calls_; }

  protected:
    void do_all_reduce(TensorView buf, parallel::ReduceOp op, Stream s) override {
        calls_.push_back({"all_reduce", s.handle});
        inner_.all_reduce(buf, op, s);
    }
    void do_all_gather(TensorView in, TensorView out, Stream s) override {
        calls_.push_back({"all_gather", s.handle});
        inner_.all_gather(in, out, s);
    }
    void do_broadcast(TensorView buf, int root, Stream s) override {
        calls_.push_back({"broadcast", s.handle});
        inner_.broadcast(buf, root, s);
    }
    void do_send(TensorView buf, int peer, Stream s) override {
        calls_.push_back({"send", s.handle});
        inner_.send(buf, peer, s);
    }
    void do_recv(TensorView buf, int peer, Stream s) override {
        calls_.push_back({"recv", s.handle});
        inner_.recv(buf, peer, s);
    }
    void do_sendrecv(TensorView a, int dst, TensorView b, int src, Stream s) override {
        calls_.push_back({"sendrecv", s.handle});
        inner_.sendrecv(a, dst, b, src, s);
    }
    void do_barrier() override { inner_.barrier(); }

  private:
    parallel::Communicator& inner_;
    std::vector<Call> calls_;
};

struct Case {
    std::string name;
    int tp, mp;
    Retrieval retrieval;
};

void PrintTo(const Case& c, std::ostream* os) {
    *os << c.name << " tp " << c.tp << " mp " << c.mp << " " << retrieval_name(c.retrieval);
}

class ModelStream : public ::testing::TestWithParam<Case> {};

TEST_P(ModelStream, EveryModelCollectiveCarriesTheBackendStream) {
    const Case c = GetParam();
    auto world = parallel::make_mpi_world_communicator();
    ASSERT_EQ(world->size(), c.tp * c.mp) << "run with mpirun -np " << c.tp * c.mp;
    const std::string dir = testing::golden_dir(c.name);
    RunConfig run;
    run.model = dir;
    run.threads = 1;
    run.parallel.tp = c.tp;
    run.parallel.mp = c.mp;
    run.memory.retrieval = c.retrieval;
    run.memory.k = 256;  // >= memory size: top-k equals dense (golden)
    auto s = open_session(run, *world);

    // The session's model, rebuilt on the fake-stream backend and the recording communicators.
    FakeStreamCpuBackend backend(1);
    RecordingCommunicator tp(*s->comms.tp), mp(*s->comms.mp);
    ModelOptions mo = s->model->options();
    ModelWeights w = load_model_weights(*Checkpoint::open(dir), s->model_config, backend,
                                        s->world.tp_rank(), s->world.tp());
    s->model = std::make_unique<LongLlama>(s->model_config, std::move(w), backend, tp, mp, mo);
    s->seq = std::make_unique<Sequence>(s->model->new_sequence());

    testing::check_golden_forward(*s, dir, 1e-4);

    RecordingCommunicator& used = c.tp > 1 ? tp : mp;
    const int64_t layers = s->model_config.num_hidden_layers;
    // tp: one all-reduce after the embedding and two per layer, per window; mp: one or three
    // all-gathers per memory layer once the memory is not empty.
    EXPECT_GE(static_cast<int64_t>(used.calls().size()), c.tp > 1 ? 1 + 2 * layers : 2);
    int64_t wrong = 0;
    for (const auto& call : tp.calls()) wrong += call.stream != fake_stream().handle;
    for (const auto& call : mp.calls()) wrong += call.stream != fake_stream().handle;
    EXPECT_EQ(wrong, 0) << "of " << tp.calls().size() + mp.calls().size()
                        << " collectives, these did not get the backend's stream";
    s->seq.reset();  // before the backend and the communicators they reference
    s->model.reset();
}

INSTANTIATE_TEST_SUITE_P(Golden, ModelStream,
                         ::testing::Values(Case{"case_a", 2, 1, Retrieval::kDense},
                                           Case{"case_a", 1, 2, Retrieval::kDense},
                                           Case{"case_a", 1, 2, Retrieval::kTopK},
                                           Case{"case_f", 2, 1, Retrieval::kDense},
                                           Case{"case_f", 1, 2, Retrieval::kTopK}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                             return i.param.name + "_tp" + std::to_string(i.param.tp) + "_mp" +
                                    std::to_string(i.param.mp) + "_" +
                                    retrieval_name(i.param.retrieval);
                         });

}  // namespace
}  // namespace fot
