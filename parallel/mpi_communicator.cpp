// The MPI side of parallel/: MpiSession, the MPI communicator, abort_world. The only library
// file that includes <mpi.h>.
//
// Every operation is posted non-blocking (MPI_I*) and completed by polling MPI_Testall against
// a deadline: that polling is the collective watchdog, so it costs no extra thread. Polling
// spins briefly, then yields, then sleeps in short steps so that oversubscribed ranks leave
// the cores to the ranks that still compute.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "parallel/mpi_session.h"
#include "parallel/self_communicator.h"
#include "parallel/world.h"
#include "runtime/core/logging.h"

namespace fot::parallel {
namespace {

std::string mpi_error_string(int code) {
    char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return str("MPI error ", code);
    return std::string(buf, static_cast<size_t>(len));
}

[[noreturn]] void throw_mpi_error(int code, const char* expr, const char* file, int line) {
    FOT_THROW("MPI call ", expr, " failed (", file, ":", line, "): ", mpi_error_string(code));
}

#define FOT_MPI_CHECK(expr)                                                                      \
    do {                                                                                         \
        int fot_mpi_rc_ = (expr);                                                                \
        if (fot_mpi_rc_ != MPI_SUCCESS) throw_mpi_error(fot_mpi_rc_, #expr, __FILE__, __LINE__); \
    } while (0)

std::atomic<bool> g_session_alive{false};
NodeInfo g_node;  // set by MpiSession (on the main thread, before any reader)
// A duplicate of MPI_COMM_WORLD used only by every_rank_failed(): its agreement can never
// match a collective the model or the jobs are blocked in.
MPI_Comm g_failure_comm = MPI_COMM_NULL;

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
    return buf;
}

std::string env_or_empty(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}
std::atomic<int64_t> g_max_chunk{INT_MAX};

bool mpi_usable() {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    return inited && !finalized;
}

// Scratch bound of the ordered f32 sum (elements per rank x ranks).
constexpr int64_t kSumScratchElems = int64_t{4} << 20;

class MpiCommunicator final : public Communicator {
  public:
    // Takes ownership of `comm` (freed on destruction unless MPI is finalised by then).
    explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
        FOT_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
        FOT_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
        FOT_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    }
    ~MpiCommunicator() override {
        // While an exception unwinds, peers may be blocked in a collective on this
        // communicator; freeing it could wait for them. The process is failing anyway.
        if (mpi_usable() && std::uncaught_exceptions() == 0) MPI_Comm_free(&comm_);
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    Device device() const override { return Device::cpu(); }
    const char* backend_name() const override { return "mpi"; }

    std::unique_ptr<Communicator> split(int color, int key) const override {
        MPI_Comm child = MPI_COMM_NULL;
        FOT_MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &child));
        if (child == MPI_COMM_NULL) return nullptr;
        auto c = std::make_unique<MpiCommunicator>(child);
        c->set_timeout(timeout());
        return c;
    }

  protected:
    void do_all_reduce(TensorView buf, ReduceOp op, Stream) override {
        MPI_Datatype type = MPI_DATATYPE_NULL;
        switch (buf.dtype) {
            case DType::kF32:
                type = MPI_FLOAT;
                break;
            case DType::kI32:
                type = MPI_INT32_T;
                break;
            case DType::kI64:
                type = MPI_INT64_T;
                break;
            default:
                FOT_THROW("all_reduce: dtype ", dtype_name(buf.dtype),
                          " is not supported on host buffers (f32, i32, i64)");
        }
        const int64_t n = buf.numel();
        if (n == 0 || size_ == 1) return;
        if (buf.dtype == DType::kF32 && op == ReduceOp::kSum) {
            ordered_sum_f32(buf.as<float>(), n);
            return;
        }
        MPI_Op mop = op == ReduceOp::kSum ? MPI_SUM : op == ReduceOp::kMax ? MPI_MAX : MPI_MIN;
        const size_t esize = dtype_size(buf.dtype);
        auto* base = static_cast<char*>(buf.data);
        std::vector<MPI_Request> reqs;
        for (int64_t off = 0; off < n; off += detail::mpi_max_chunk()) {
            int cnt = chunk_count(n - off);
            reqs.emplace_back();
            FOT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, base + off * esize, cnt, type, mop, comm_,
                                         &reqs.back()));
        }
        wait(reqs, nullptr, [&] {
            return str("all_reduce(", reduce_op_name(op), ", ", n, " x ", dtype_name(buf.dtype),
                       ")");
        });
    }

    void do_all_gather(TensorView in, TensorView out, Stream) override {
        const int64_t nbytes = static_cast<int64_t>(in.nbytes());
        auto* dst = static_cast<char*>(out.data);
        const bool in_place = in.data == dst + rank_ * nbytes;
        auto what = [&] {
            return str("all_gather(", in.numel(), " x ", dtype_name(in.dtype), ")");
        };
        if (nbytes == 0) return;
        if (nbytes <= detail::mpi_max_chunk()) {
            std::vector<MPI_Request> reqs(1);
            int cnt = static_cast<int>(nbytes);
            FOT_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.data, cnt, MPI_BYTE, dst, cnt,
                                         MPI_BYTE, comm_, &reqs[0]));
            wait(reqs, nullptr, what);
            return;
        }
        // Above the chunk limit the rank-major output is not contiguous per chunk: gather each
        // chunk into scratch, then scatter the pieces to their rank slots.
        const int64_t chunk = detail::mpi_max_chunk();
        std::vector<char> tmp(static_cast<size_t>(chunk) * size_);
        const char* src = static_cast<const char*>(in.data);
        for (int64_t off = 0; off < nbytes; off += chunk) {
            int cnt = chunk_count(nbytes - off);
            std::vector<MPI_Request> reqs(1);
            FOT_MPI_CHECK(MPI_Iallgather(src + off, cnt, MPI_BYTE, tmp.data(), cnt, MPI_BYTE, comm_,
                                         &reqs[0]));
            wait(reqs, nullptr, what);
            for (int r = 0; r < size_; ++r) {
                std::memcpy(dst + r * nbytes + off, tmp.data() + static_cast<size_t>(r) * cnt,
                            static_cast<size_t>(cnt));
            }
        }
    }

    void do_broadcast(TensorView buf, int root, Stream) override {
        const int64_t nbytes = static_cast<int64_t>(buf.nbytes());
        auto* base = static_cast<char*>(buf.data);
        std::vector<MPI_Request> reqs;
        for (int64_t off = 0; off < nbytes; off += detail::mpi_max_chunk()) {
            reqs.emplace_back();
            FOT_MPI_CHECK(MPI_Ibcast(base + off, chunk_count(nbytes - off), MPI_BYTE, root, comm_,
                                     &reqs.back()));
        }
        wait(reqs, nullptr,
             [&] { return str("broadcast(", nbytes, " bytes from root ", root, ")"); });
    }

    void do_send(TensorView buf, int peer, Stream) override {
        const int64_t nbytes = static_cast<int64_t>(buf.nbytes());
        auto* base = static_cast<char*>(buf.data);
        std::vector<MPI_Request> reqs;
        // A zero-byte message is still sent so that recv of an empty buffer matches it.
        for (int64_t off = 0; off == 0 || off < nbytes; off += detail::mpi_max_chunk()) {
            reqs.emplace_back();
            FOT_MPI_CHECK(MPI_Isend(base + off, chunk_count(nbytes - off), MPI_BYTE, peer, kTag,
                                    comm_, &reqs.back()));
        }
        wait(reqs, nullptr, [&] { return str("send(", nbytes, " bytes to rank ", peer, ")"); });
    }

    bool do_probe(int peer) override {
        int flag = 0;
        FOT_MPI_CHECK(MPI_Iprobe(peer, kTag, comm_, &flag, MPI_STATUS_IGNORE));
        return flag != 0;
    }

    void do_recv(TensorView buf, int peer, Stream) override {
        const int64_t nbytes = static_cast<int64_t>(buf.nbytes());
        auto* base = static_cast<char*>(buf.data);
        std::vector<MPI_Request> reqs;
        std::vector<int> expected;
        for (int64_t off = 0; off == 0 || off < nbytes; off += detail::mpi_max_chunk()) {
            reqs.emplace_back();
            expected.push_back(chunk_count(nbytes - off));
            FOT_MPI_CHECK(
                MPI_Irecv(base + off, expected.back(), MPI_BYTE, peer, kTag, comm_, &reqs.back()));
        }
        std::vector<MPI_Status> statuses(reqs.size());
        auto what = [&] { return str("recv(", nbytes, " bytes from rank ", peer, ")"); };
        wait(reqs, &statuses, what);
        for (size_t i = 0; i < statuses.size(); ++i) {
            int got = 0;
            FOT_MPI_CHECK(MPI_Get_count(&statuses[i], MPI_BYTE, &got));
            FOT_CHECK(got == expected[i], what(), ": rank ", peer, " sent a message of ", got,
                      " bytes where ", expected[i], " were expected");
        }
    }

    // Both directions posted before waiting: a symmetric exchange cannot deadlock.
    void do_sendrecv(TensorView send_buf, int dst, TensorView recv_buf, int src, Stream) override {
        const int64_t sbytes = static_cast<int64_t>(send_buf.nbytes());
        const int64_t rbytes = static_cast<int64_t>(recv_buf.nbytes());
        auto* sbase = static_cast<char*>(send_buf.data);
        auto* rbase = static_cast<char*>(recv_buf.data);
        std::vector<MPI_Request> reqs;
        std::vector<int> expected;
        for (int64_t off = 0; off == 0 || off < rbytes; off += detail::mpi_max_chunk()) {
            reqs.emplace_back();
            expected.push_back(chunk_count(rbytes - off));
            FOT_MPI_CHECK(
                MPI_Irecv(rbase + off, expected.back(), MPI_BYTE, src, kTag, comm_, &reqs.back()));
        }
        const size_t nrecv = reqs.size();
        for (int64_t off = 0; off == 0 || off < sbytes; off += detail::mpi_max_chunk()) {
            reqs.emplace_back();
            FOT_MPI_CHECK(MPI_Isend(sbase + off, chunk_count(sbytes - off), MPI_BYTE, dst, kTag,
                                    comm_, &reqs.back()));
        }
        std::vector<MPI_Status> statuses(reqs.size());
        auto what = [&] {
            return str("sendrecv(", sbytes, " bytes to rank ", dst, ", ", rbytes,
                       " bytes from rank ", src, ")");
        };
        wait(reqs, &statuses, what);
        for (size_t i = 0; i < nrecv; ++i) {
            int got = 0;
            FOT_MPI_CHECK(MPI_Get_count(&statuses[i], MPI_BYTE, &got));
            FOT_CHECK(got == expected[i], what(), ": rank ", src, " sent a message of ", got,
                      " bytes where ", expected[i], " were expected");
        }
    }

    void do_barrier() override {
        std::vector<MPI_Request> reqs(1);
        FOT_MPI_CHECK(MPI_Ibarrier(comm_, &reqs[0]));
        wait(reqs, nullptr, [] { return std::string("barrier"); });
    }

  private:
    static constexpr int kTag = 7;

    static int chunk_count(int64_t remaining) {
        return static_cast<int>(std::min(remaining, detail::mpi_max_chunk()));
    }

    // Sums in rank order, (((x0 + x1) + x2) + ...), so the result is bitwise identical on
    // every rank and independent of the MPI library's reduction algorithm. Costs (size - 1)
    // x n floats received per rank, like a ring all-reduce at size 2.
    void ordered_sum_f32(float* buf, int64_t n) {
        const int64_t chunk =
            std::max<int64_t>(1, std::min({n, detail::mpi_max_chunk(), kSumScratchElems / size_}));
        scratch_.resize(static_cast<size_t>(chunk) * size_);
        for (int64_t off = 0; off < n; off += chunk) {
            const int cnt = static_cast<int>(std::min(chunk, n - off));
            std::vector<MPI_Request> reqs(1);
            FOT_MPI_CHECK(MPI_Iallgather(buf + off, cnt, MPI_FLOAT, scratch_.data(), cnt, MPI_FLOAT,
                                         comm_, &reqs[0]));
            wait(reqs, nullptr, [&] { return str("all_reduce(sum, ", n, " x f32)"); });
            float* out = buf + off;
            std::memcpy(out, scratch_.data(), static_cast<size_t>(cnt) * sizeof(float));
            for (int r = 1; r < size_; ++r) {
                const float* x = scratch_.data() + static_cast<size_t>(r) * cnt;
                for (int i = 0; i < cnt; ++i) out[i] += x[i];
            }
        }
    }

    // Completes `reqs`, or aborts the world when the watchdog deadline passes.
    template <typename Describe>
    void wait(std::vector<MPI_Request>& reqs, std::vector<MPI_Status>* statuses,
              const Describe& describe) {
        using Clock = std::chrono::steady_clock;
        const int n = static_cast<int>(reqs.size());
        MPI_Status* st = statuses ? statuses->data() : MPI_STATUSES_IGNORE;
        int done = 0;
        Clock::time_point start{};
        for (uint64_t it = 0;; ++it) {
            FOT_MPI_CHECK(MPI_Testall(n, reqs.data(), &done, st));
            if (done) return;
            if (it < 64) continue;
            if (it == 64) start = Clock::now();
            auto waited = Clock::now() - start;
            if (timeout_s_ > 0 && waited > std::chrono::duration<double>(timeout_s_)) {
                abort_world(str(describe(), " on the mpi communicator of size ", size_,
                                " (this is its rank ", rank_, ") did not complete within ",
                                timeout_s_,
                                " s (FOT_COLLECTIVE_TIMEOUT): another rank is stuck, "
                                "has died or called a different collective"));
            }
            if (waited < std::chrono::milliseconds(2)) {
                std::this_thread::yield();
            } else {
                std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        }
    }

    MPI_Comm comm_;
    int rank_ = 0;
    int size_ = 1;
    std::vector<float> scratch_;
};

bool env_set(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0';
}

}  // namespace

namespace detail {
void set_mpi_max_chunk(int64_t elements) {
    FOT_CHECK(elements >= 1 && elements <= INT_MAX, "set_mpi_max_chunk: ", elements,
              " is not in [1, INT_MAX]");
    g_max_chunk = elements;
}
int64_t mpi_max_chunk() {
    return g_max_chunk.load(std::memory_order_relaxed);
}
}  // namespace detail

bool MpiSession::launched_by_mpi() {
    const char* force = std::getenv("FOT_MPI");
    if (force != nullptr && *force != '\0') {
        FOT_CHECK(std::strcmp(force, "0") == 0 || std::strcmp(force, "1") == 0, "FOT_MPI=", force,
                  " must be 0 (never initialise MPI) or 1 (always)");
        return force[0] == '1';
    }
    // Open MPI's mpirun, MPICH/Hydra, PMI-1/2 and PMIx (srun --mpi=pmi2|pmix), Slurm steps.
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                             "MPI_LOCALNRANKS", "SLURM_STEP_ID"}) {
        if (env_set(name)) return true;
    }
    return false;
}

MpiSession::MpiSession(int* argc, char*** argv, bool force_mpi) {
    FOT_CHECK(!g_session_alive.exchange(true),
              "MpiSession: a session already exists in this process (create exactly one, in main)");
    try {
        int finalized = 0;
        MPI_Finalized(&finalized);
        FOT_CHECK(!finalized, "MpiSession: MPI was already finalised in this process");
        local_rank_ = std::max(0, local_rank_from_env());
        g_node = NodeInfo{};
        g_node.name = host_name();
        g_node.visible = {env_or_empty("CUDA_VISIBLE_DEVICES")};
        if (!force_mpi && !launched_by_mpi()) return;
        int inited = 0;
        MPI_Initialized(&inited);
        if (!inited) {
            int provided = 0;
            FOT_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
            initialized_ = true;
        }
        FOT_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
        FOT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
        FOT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
        // The node: its ranks (local rank order = global rank order) and each one's
        // CUDA_VISIBLE_DEVICES, for the GPU choice (device_select.h).
        MPI_Comm node = MPI_COMM_NULL;
        FOT_MPI_CHECK(
            MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
        int node_rank = 0, node_size = 1;
        FOT_MPI_CHECK(MPI_Comm_rank(node, &node_rank));
        FOT_MPI_CHECK(MPI_Comm_size(node, &node_size));
        NodeInfo info;
        char name[MPI_MAX_PROCESSOR_NAME] = {};
        int name_len = 0;
        if (MPI_Get_processor_name(name, &name_len) == MPI_SUCCESS && name_len > 0) {
            info.name.assign(name, static_cast<size_t>(name_len));
        } else {
            info.name = host_name();
        }
        info.local_rank = node_rank;
        info.ranks.assign(static_cast<size_t>(node_size), 0);
        FOT_MPI_CHECK(MPI_Allgather(&rank_, 1, MPI_INT, info.ranks.data(), 1, MPI_INT, node));
        constexpr int kEnvBytes = 1024;
        std::string mine = env_or_empty("CUDA_VISIBLE_DEVICES");
        mine.resize(kEnvBytes - 1);  // fixed width (longer lists are cut), NUL-padded
        std::vector<char> all(static_cast<size_t>(node_size) * kEnvBytes);
        FOT_MPI_CHECK(MPI_Allgather(mine.c_str(), kEnvBytes, MPI_CHAR, all.data(), kEnvBytes,
                                    MPI_CHAR, node));
        for (int i = 0; i < node_size; ++i) info.visible.emplace_back(all.data() + i * kEnvBytes);
        MPI_Comm_free(&node);
        g_node = std::move(info);
        if (local_rank_from_env() < 0) local_rank_ = node_rank;
        if (size_ > 1) set_log_rank(rank_, size_);
        if (size_ > 1) FOT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &g_failure_comm));
    } catch (...) {
        g_session_alive = false;
        throw;
    }
}

MpiSession::~MpiSession() {
    // MPI_Finalize waits for the other ranks. While an exception unwinds (it is on its way to
    // main's catch and abort_world) that wait could be forever: peers are blocked in a
    // collective this rank will never join. Leave MPI up so abort_world can MPI_Abort.
    if (initialized_ && mpi_usable() && std::uncaught_exceptions() == 0) MPI_Finalize();
    g_session_alive = false;
}

const NodeInfo& node_info() {
    return g_node;
}

std::unique_ptr<Communicator> make_mpi_world_communicator() {
    FOT_CHECK(mpi_usable(),
              "make_mpi_world_communicator: MPI is not initialised (create an MpiSession in main "
              "and launch with mpirun)");
    MPI_Comm dup = MPI_COMM_NULL;
    FOT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
    return std::make_unique<MpiCommunicator>(dup);
}

std::unique_ptr<Communicator> make_world_communicator() {
    if (mpi_usable()) {
        int size = 1;
        FOT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
        if (size > 1) return make_mpi_world_communicator();
    }
    return std::make_unique<SelfCommunicator>();
}

bool every_rank_failed(double timeout_s) {
    if (g_failure_comm == MPI_COMM_NULL || !mpi_usable()) return false;
    int one = 1, failed = 0, size = 1;
    MPI_Comm_size(g_failure_comm, &size);
    MPI_Request req = MPI_REQUEST_NULL;
    if (MPI_Iallreduce(&one, &failed, 1, MPI_INT, MPI_SUM, g_failure_comm, &req) != MPI_SUCCESS) {
        return false;
    }
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout_s));
    for (;;) {
        int done = 0;
        if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
        // Only failing ranks contribute, so completion means every rank failed.
        if (done) return failed == size;
        if (std::chrono::steady_clock::now() >= deadline) return false;  // MPI_Abort follows
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void abort_world(const std::string& msg) {
    log_line(LogLevel::kError, msg);
    if (mpi_usable()) {
        int size = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (size > 1) log_line(LogLevel::kError, str("aborting all ", size, " ranks"));
        std::fflush(nullptr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    std::fflush(nullptr);
    std::_Exit(1);
}

}  // namespace fot::parallel
