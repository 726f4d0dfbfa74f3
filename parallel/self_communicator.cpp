#include "parallel/self_communicator.h"

#include <cstring>

namespace fot::parallel {

std::unique_ptr<Communicator> SelfCommunicator::split(int color, int key) const {
    if (color < 0) return nullptr;
    auto child = std::make_unique<SelfCommunicator>(device_);
    child->set_timeout(timeout());
    return child;
}

void SelfCommunicator::do_all_reduce(TensorView buf, ReduceOp op, Stream s) {
    // Same dtype rule as the MPI communicator, so a single-rank run rejects what a
    // multi-rank run would.
    FOT_CHECK(buf.dtype == DType::kF32 || buf.dtype == DType::kI32 || buf.dtype == DType::kI64 ||
                  device_.kind == DeviceKind::kCuda,
              "all_reduce: dtype ", dtype_name(buf.dtype),
              " is not supported on host buffers (f32, i32, i64)");
}

void SelfCommunicator::do_all_gather(TensorView in, TensorView out, Stream s) {
    if (in.data == out.data || in.nbytes() == 0) return;
    FOT_CHECK(device_.kind == DeviceKind::kCpu,
              "all_gather: the self communicator on a CUDA device only supports in-place "
              "gathers (in == out)");
    std::memmove(out.data, in.data, in.nbytes());
}

void SelfCommunicator::do_send(TensorView buf, int peer, Stream s) {
    FOT_THROW("send: the self communicator has no peers");  // check_peer already rejects
}

void SelfCommunicator::do_recv(TensorView buf, int peer, Stream s) {
    FOT_THROW("recv: the self communicator has no peers");
}

void SelfCommunicator::do_sendrecv(TensorView, int, TensorView, int, Stream) {
    FOT_THROW("sendrecv: the self communicator has no peers");
}

}  // namespace fot::parallel
