// NCCL communicator. The only file that includes <nccl.h>.
#include "parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <thread>

#include "parallel/mpi_session.h"

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

class NcclCommunicator final : public Communicator {
  public:
    NcclCommunicator(ncclComm_t comm, int device) : comm_(comm), device_(device) {
        FOT_NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
        FOT_NCCL_CHECK(ncclCommCount(comm_, &size_));
        DeviceScope scope(device_);
        FOT_NCCL_CUDA_CHECK(cudaMalloc(&barrier_buf_, sizeof(int32_t)));
    }
    ~NcclCommunicator() override {
        DeviceScope scope(device_);
        cudaFree(barrier_buf_);
        ncclCommDestroy(comm_);
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
        FOT_NCCL_CHECK(ncclAllReduce(buf.data, buf.data, static_cast<size_t>(buf.numel()), type,
                                     nop, comm_, to_cuda(s)));
    }

    void do_all_gather(TensorView in, TensorView out, Stream s) override {
        if (in.nbytes() == 0) return;
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(ncclAllGather(in.data, out.data, in.nbytes(), ncclChar, comm_, to_cuda(s)));
    }

    void do_broadcast(TensorView buf, int root, Stream s) override {
        if (buf.nbytes() == 0) return;
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(
            ncclBroadcast(buf.data, buf.data, buf.nbytes(), ncclChar, root, comm_, to_cuda(s)));
    }

    void do_send(TensorView buf, int peer, Stream s) override {
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(ncclSend(buf.data, buf.nbytes(), ncclChar, peer, comm_, to_cuda(s)));
    }

    void do_recv(TensorView buf, int peer, Stream s) override {
        DeviceScope scope(device_);
        FOT_NCCL_CHECK(ncclRecv(buf.data, buf.nbytes(), ncclChar, peer, comm_, to_cuda(s)));
    }

    // One-element all-reduce on a private stream, then a watchdog-polled synchronise.
    void do_barrier() override {
        DeviceScope scope(device_);
        struct OwnedStream {
            cudaStream_t s = nullptr;
            ~OwnedStream() {
                if (s) cudaStreamDestroy(s);
            }
        } stream;
        FOT_NCCL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream.s, cudaStreamNonBlocking));
        FOT_NCCL_CHECK(
            ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclInt32, ncclSum, comm_, stream.s));
        using Clock = std::chrono::steady_clock;
        const auto start = Clock::now();
        for (;;) {
            cudaError_t q = cudaStreamQuery(stream.s);
            if (q == cudaSuccess) return;
            if (q != cudaErrorNotReady) FOT_NCCL_CUDA_CHECK(q);
            ncclResult_t async = ncclSuccess;
            FOT_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
            FOT_NCCL_CHECK(async);
            if (timeout_s_ > 0 &&
                Clock::now() - start > std::chrono::duration<double>(timeout_s_)) {
                ncclCommAbort(comm_);
                abort_world(str("barrier on the nccl communicator of size ", size_,
                                " (this is its rank ", rank_, ") did not complete within ",
                                timeout_s_, " s (FOT_COLLECTIVE_TIMEOUT)"));
            }
            std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
    }

  private:
    ncclComm_t comm_;
    int device_;
    int rank_ = 0;
    int size_ = 1;
    void* barrier_buf_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device) {
    FOT_CHECK(bootstrap.device().kind == DeviceKind::kCpu,
              "make_nccl_communicator: the bootstrap communicator must work on host buffers");
    int count = 0;
    FOT_NCCL_CUDA_CHECK(cudaGetDeviceCount(&count));
    FOT_CHECK(device >= 0 && device < count, "rank ", bootstrap.rank(), " wants CUDA device ",
              device, " but this process sees ", count,
              " (pick it with World::cuda_device: start at most one rank per GPU)");
    DeviceScope scope(device);
    ncclUniqueId id{};
    if (bootstrap.rank() == 0) FOT_NCCL_CHECK(ncclGetUniqueId(&id));
    bootstrap.broadcast(detail::byte_view(&id, sizeof(id)), 0);
    ncclComm_t comm = nullptr;
    FOT_NCCL_CHECK(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
    return std::make_unique<NcclCommunicator>(comm, device);
}

}  // namespace fot::parallel
