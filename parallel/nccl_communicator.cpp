// NCCL communicator. The only file that includes <nccl.h>.
#include "parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/mpi_session.h"
#include "parallel/nccl_watchdog.h"

namespace fot::parallel {
namespace {

[[noreturn]] void throw_nccl_error(ncclResult_t rc, const char* expr, const char* file, int line) {
    FOT_THROW(
        "NCCL call ", expr, " failed (", file, ":", line, "): ", ncclGetErrorString(rc),
        rc == ncclSystemError || rc == ncclRemoteError ? " (see NCCL_DEBUG=WARN output)" : "");
}

[[noreturn]] void throw_cuda_error(cudaError_t rc, const char* expr, const char* file, int line) {
    FOT_THROW("CUDA call ", expr, " failed (", file, ":", line, "): ", cudaGetErrorString(rc));
}

#define FOT_NCCL_CHECK(expr)                                           \
    do {                                                               \
        ncclResult_t fot_nccl_rc_ = (expr);                            \
        if (fot_nccl_rc_ != ncclSuccess)                               \
            throw_nccl_error(fot_nccl_rc_, #expr, __FILE__, __LINE__); \
    } while (0)

#define FOT_NCCL_CUDA_CHECK(expr)                                      \
    do {                                                               \
        cudaError_t fot_cuda_rc_ = (expr);                             \
        if (fot_cuda_rc_ != cudaSuccess)                               \
            throw_cuda_error(fot_cuda_rc_, #expr, __FILE__, __LINE__); \
    } while (0)

// Makes `device` current for a scope and restores the previous device.
class DeviceScope {
  public:
    explicit DeviceScope(int device) {
        FOT_NCCL_CUDA_CHECK(cudaGetDevice(&prev_));
        if (prev_ != device) FOT_NCCL_CUDA_CHECK(cudaSetDevice(device));
    }
    ~DeviceScope() { cudaSetDevice(prev_); }

  private:
    int prev_ = 0;
};

cudaStream_t to_cuda(Stream s) {
    return static_cast<cudaStream_t>(s.handle);
}

// Every live NCCL communicator of this process: a failure aborts all of them (the other
// communicators' kernels may be blocked on the same dead peer).
std::mutex g_comms_mu;
std::vector<ncclComm_t> g_comms;

void abort_all_nccl_communicators() {
    std::lock_guard<std::mutex> lock(g_comms_mu);
    for (ncclComm_t c : g_comms) ncclCommAbort(c);
    g_comms.clear();
}

class NcclCommunicator final : public Communicator {
  public:
    NcclCommunicator(ncclComm_t comm, int device) : comm_(comm), device_(device) {
        FOT_NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
        FOT_NCCL_CHECK(ncclCommCount(comm_, &size_));
        DeviceScope scope(device_);
        FOT_NCCL_CUDA_CHECK(cudaMalloc(&barrier_buf_, sizeof(int32_t)));
        // Work called with Stream{} runs here, never on the legacy default stream.
        FOT_NCCL_CUDA_CHECK(cudaStreamCreateWithFlags(&own_stream_, cudaStreamNonBlocking));
        {
            std::lock_guard<std::mutex> lock(g_comms_mu);
            g_comms.push_back(comm_);
        }
        sources_.query_async_error = [comm = comm_]() -> std::string {
            ncclResult_t async = ncclSuccess;
            ncclResult_t rc = ncclCommGetAsyncError(comm, &async);
            if (rc != ncclSuccess) return str("ncclCommGetAsyncError: ", ncclGetErrorString(rc));
            if (async == ncclSuccess || async == ncclInProgress) return "";
            return str("NCCL async error: ", ncclGetErrorString(async),
                       async == ncclSystemError || async == ncclRemoteError
                           ? " (see NCCL_DEBUG=WARN output)"
                           : "");
        };
        sources_.abort = abort_all_nccl_communicators;
        watchdog_ = std::make_unique<WorkWatchdog>(
            sources_, [](const std::string& msg) { abort_world(msg); });
    }
    ~NcclCommunicator() override {
        watchdog_.reset();
        DeviceScope scope(device_);
        cudaStreamSynchronize(own_stream_);
        cudaStreamDestroy(own_stream_);
        cudaFree(barrier_buf_);
        bool live = false;
        {
            std::lock_guard<std::mutex> lock(g_comms_mu);
            auto it = std::find(g_comms.begin(), g_comms.end(), comm_);
            live = it != g_comms.end();
            if (live) g_comms.erase(it);
        }
        if (live) ncclCommDestroy(comm_);
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    Device device() const override { return Device::cuda(device_); }
    const char* backend_name() const override { return "nccl"; }

    std::unique_ptr<Communicator> split(int color, int key) const override {
        DeviceScope scope(device_);
        ncclComm_t child = nullptr;
        FOT_NCCL_CHECK(
            ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, nullptr));
        if (child == nullptr) return nullptr;
        auto c = std::make_unique<NcclCommunicator>(child, device_);
        c->set_timeout(timeout());
        return c;
    }

  protected:
    void do_all_reduce(TensorView buf, ReduceOp op, Stream s) override {
        ncclDataType_t type = ncclFloat32;
        switch (buf.dtype) {
            case DType::kF32:
                type = ncclFloat32;
                break;
            case DType::kBF16:
                type = ncclBfloat16;
                break;
            case DType::kF16:
                type = ncclFloat16;
                break;
            case DType::kI32:
                type = ncclInt32;
                break;
            case DType::kI64:
                type = ncclInt64;
                break;
            default:
                FOT_THROW("all_reduce: dtype ", dtype_name(buf.dtype),
                          " is not supported by the nccl communicator");
        }
        ncclRedOp_t nop = op == ReduceOp::kSum ? ncclSum : op == ReduceOp::kMax ? ncclMax : ncclMin;
        if (buf.numel() == 0) return;
        DeviceScope scope(device_);
        cudaStream_t st = pick(s);
        FOT_NCCL_CHECK(ncclAllReduce(buf.data, buf.data, static_cast<size_t>(buf.numel()), type,
                                     nop, comm_, st));
        watch(s, "all_reduce", reduce_op_name(op), buf);
    }

    void do_all_gather(TensorView in, TensorView out, Stream s) override {
        if (in.nbytes() == 0) return;
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(ncclAllGather(in.data, out.data, in.nbytes(), ncclChar, comm_, pick(s)));
        watch(s, "all_gather", "", in);
    }

    void do_broadcast(TensorView buf, int root, Stream s) override {
        if (buf.nbytes() == 0) return;
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(
            ncclBroadcast(buf.data, buf.data, buf.nbytes(), ncclChar, root, comm_, pick(s)));
        watch(s, "broadcast", str("root ", root), buf);
    }

    void do_send(TensorView buf, int peer, Stream s) override {
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(ncclSend(buf.data, buf.nbytes(), ncclChar, peer, comm_, pick(s)));
        watch(s, "send", str("to rank ", peer), buf);
    }

    void do_recv(TensorView buf, int peer, Stream s) override {
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(ncclRecv(buf.data, buf.nbytes(), ncclChar, peer, comm_, pick(s)));
        watch(s, "recv", str("from rank ", peer), buf);
    }

    // One NCCL group: both directions progress together, so a ring where everyone sends
    // first cannot deadlock.
    void do_sendrecv(TensorView send_buf, int dst, TensorView recv_buf, int src,
                     Stream s) override {
        DeviceScope scope(device_);
        cudaStream_t st = pick(s);
        FOT_NCCL_CHECK(ncclGroupStart());
        ncclResult_t rs = ncclSend(send_buf.data, send_buf.nbytes(), ncclChar, dst, comm_, st);
        ncclResult_t rr = ncclRecv(recv_buf.data, recv_buf.nbytes(), ncclChar, src, comm_, st);
        ncclResult_t re = ncclGroupEnd();
        FOT_NCCL_CHECK(rs);
        FOT_NCCL_CHECK(rr);
        FOT_NCCL_CHECK(re);
        watch(s, "sendrecv", str("to rank ", dst, ", from rank ", src), recv_buf);
    }

    // One-element all-reduce on the communicator's own stream, waited for under the watchdog.
    void do_barrier() override {
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(
            ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclInt32, ncclSum, comm_, own_stream_));
        wait_here(str("barrier(1 x i32 = 4 bytes) on the nccl ", group_name(), " group (rank ",
                      rank_, " of ", size_, ")"));
    }

  private:
    cudaStream_t pick(Stream s) const { return s.handle ? to_cuda(s) : own_stream_; }

    // After enqueueing: with a caller's stream, the background watchdog waits for an event
    // recorded after the work (the caller's later stream synchronise cannot hang: the
    // watchdog aborts the communicators and the world). With Stream{}, the work ran on the
    // communicator's own stream and the call waits for it here, under the same watchdog.
    void watch(Stream s, const char* op, const std::string& detail, const TensorView& v) {
        const std::string what =
            describe_nccl_work(op, detail, v.numel(), dtype_name(v.dtype),
                               static_cast<int64_t>(v.nbytes()), group_name(), rank_, size_);
        if (s.handle == nullptr) {
            wait_here(what);
            return;
        }
        cudaEvent_t ev = nullptr;
        FOT_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
        std::shared_ptr<void> owned(ev,
                                    [](void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); });
        FOT_NCCL_CUDA_CHECK(cudaEventRecord(ev, to_cuda(s)));
        watchdog_->watch({what,
                          [owned]() {
                              cudaError_t q = cudaEventQuery(static_cast<cudaEvent_t>(owned.get()));
                              if (q == cudaErrorNotReady) return false;
                              FOT_NCCL_CUDA_CHECK(q);
                              return true;
                          }},
                         timeout_s_);
    }

    void wait_here(const std::string& what) {
        cudaStream_t st = own_stream_;
        const std::string failure = wait_for_work({what,
                                                   [st]() {
                                                       cudaError_t q = cudaStreamQuery(st);
                                                       if (q == cudaErrorNotReady) return false;
                                                       FOT_NCCL_CUDA_CHECK(q);
                                                       return true;
                                                   }},
                                                  sources_, timeout_s_);
        if (!failure.empty()) abort_world(failure);
    }

    ncclComm_t comm_;
    int device_;
    int rank_ = 0;
    int size_ = 1;
    void* barrier_buf_ = nullptr;
    cudaStream_t own_stream_ = nullptr;
    WatchSources sources_;
    std::unique_ptr<WorkWatchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device) {
    FOT_CHECK(bootstrap.device().kind == DeviceKind::kCpu,
              "make_nccl_communicator: the bootstrap communicator must work on host buffers");
    int count = 0;
    FOT_NCCL_CUDA_CHECK(cudaGetDeviceCount(&count));
    FOT_CHECK(device >= 0 && device < count, "rank ", bootstrap.rank(), " wants CUDA device ",
              device, " but this process sees ", count,
              " (pick it with select_cuda_device: start at most one rank per GPU)");
    DeviceScope scope(device);
    ncclUniqueId id{};
    if (bootstrap.rank() == 0) FOT_NCCL_CHECK(ncclGetUniqueId(&id));
    bootstrap.broadcast(detail::byte_view(&id, sizeof(id)), 0);
    ncclComm_t comm = nullptr;
    FOT_NCCL_CHECK(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
    return std::make_unique<NcclCommunicator>(comm, device);
}

}  // namespace fot::parallel
