// SelfCommunicator: the communicator of a one-rank world. No MPI is needed (it works before or
// without MPI_Init), so unit tests and single-device runs take the same code path as
// distributed ones.
//
// Every collective is a no-op or a copy: all_reduce leaves the buffer unchanged, all_gather
// copies in to out, broadcast (root 0) does nothing, barrier returns. send/recv have no valid
// peer and always throw. Host buffers by default; constructed with a CUDA device it accepts
// device buffers but only for operations that need no copy (all_gather must then be in place).
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace fot::parallel {

class SelfCommunicator final : public Communicator {
  public:
    explicit SelfCommunicator(Device device = Device::cpu()) : device_(device) {}

    int rank() const override { return 0; }
    int size() const override { return 1; }
    Device device() const override { return device_; }
    const char* backend_name() const override { return "self"; }
    std::unique_ptr<Communicator> split(int color, int key) const override;

  protected:
    void do_all_reduce(TensorView buf, ReduceOp op, Stream s) override;
    void do_all_gather(TensorView in, TensorView out, Stream s) override;
    void do_broadcast(TensorView buf, int root, Stream s) override {}
    void do_send(TensorView buf, int peer, Stream s) override;
    void do_recv(TensorView buf, int peer, Stream s) override;
    void do_sendrecv(TensorView send_buf, int dst, TensorView recv_buf, int src, Stream s) override;
    void do_barrier() override {}

  private:
    Device device_;
};

}  // namespace fot::parallel
