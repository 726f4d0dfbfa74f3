#include "parallel/communicator.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace fot::parallel {

const char* reduce_op_name(ReduceOp op) {
    switch (op) {
        case ReduceOp::kSum:
            return "sum";
        case ReduceOp::kMax:
            return "max";
        case ReduceOp::kMin:
            return "min";
    }
    return "?";
}

double collective_timeout_from_env() {
    const char* env = std::getenv("FOT_COLLECTIVE_TIMEOUT");
    if (env == nullptr || *env == '\0') return 600.0;
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(env, &end);
    FOT_CHECK(errno == 0 && end != env && *end == '\0' && std::isfinite(v) && v >= 0,
              "FOT_COLLECTIVE_TIMEOUT=", env,
              " is not a number of seconds >= 0 (0 disables the collective watchdog)");
    return v;
}

Communicator::Communicator() : timeout_s_(collective_timeout_from_env()) {}

void Communicator::set_timeout(double seconds) {
    FOT_CHECK(std::isfinite(seconds) && seconds >= 0, "Communicator::set_timeout: ", seconds,
              " is not a number of seconds >= 0");
    timeout_s_ = seconds;
}

void Communicator::check_buffer(const TensorView& v, const char* op, const char* what) const {
    FOT_CHECK(v.device == device(), op, ": ", what, " lives on ",
              v.device.kind == DeviceKind::kCpu ? "the host" : "a CUDA device", " but the ",
              backend_name(), " communicator works on ",
              device().kind == DeviceKind::kCpu ? "host" : "CUDA device", " buffers");
    for (int64_t d : v.shape) {
        FOT_CHECK(d >= 0, op, ": ", what, " has a negative dimension in shape ",
                  shape_str(v.shape));
    }
    FOT_CHECK(v.data != nullptr || v.numel() == 0, op, ": ", what, " of shape ", shape_str(v.shape),
              " has no data pointer");
}

void Communicator::check_host(const char* op) const {
    FOT_CHECK(device().kind == DeviceKind::kCpu, op, " is a host control-plane helper; the ",
              backend_name(), " communicator works on device buffers (use an MPI communicator)");
}

void Communicator::check_peer(int peer, const char* op) const {
    FOT_CHECK(peer >= 0 && peer < size(), op, ": peer ", peer, " is not a rank of this ",
              backend_name(), " communicator (size ", size(), ")");
    FOT_CHECK(peer != rank(), op, ": peer ", peer, " is this rank itself");
}

void Communicator::all_reduce(TensorView buf, ReduceOp op, Stream s) {
    check_buffer(buf, "all_reduce", "buf");
    do_all_reduce(buf, op, s);
}

void Communicator::all_gather(TensorView in, TensorView out, Stream s) {
    check_buffer(in, "all_gather", "in");
    check_buffer(out, "all_gather", "out");
    FOT_CHECK(in.dtype == out.dtype, "all_gather: in is ", dtype_name(in.dtype), " but out is ",
              dtype_name(out.dtype));
    FOT_CHECK(out.numel() == in.numel() * size(), "all_gather: out has ", out.numel(),
              " elements, expected size ", size(), " x in ", in.numel(), " = ",
              in.numel() * size());
    do_all_gather(in, out, s);
}

void Communicator::broadcast(TensorView buf, int root, Stream s) {
    check_buffer(buf, "broadcast", "buf");
    FOT_CHECK(root >= 0 && root < size(), "broadcast: root ", root, " is not a rank of this ",
              backend_name(), " communicator (size ", size(), ")");
    do_broadcast(buf, root, s);
}

void Communicator::send(TensorView buf, int peer, Stream s) {
    check_buffer(buf, "send", "buf");
    check_peer(peer, "send");
    do_send(buf, peer, s);
}

void Communicator::recv(TensorView buf, int peer, Stream s) {
    check_buffer(buf, "recv", "buf");
    check_peer(peer, "recv");
    do_recv(buf, peer, s);
}

void Communicator::sendrecv(TensorView send_buf, int dst, TensorView recv_buf, int src, Stream s) {
    check_buffer(send_buf, "sendrecv", "send_buf");
    check_buffer(recv_buf, "sendrecv", "recv_buf");
    check_peer(dst, "sendrecv");
    check_peer(src, "sendrecv");
    do_sendrecv(send_buf, dst, recv_buf, src, s);
}

bool Communicator::probe(int peer) {
    check_peer(peer, "probe");
    return do_probe(peer);
}

void Communicator::barrier() {
    do_barrier();
}

void Communicator::broadcast_string(std::string& str, int root) {
    check_host("broadcast_string");
    int64_t n = static_cast<int64_t>(str.size());
    broadcast_value(n, root);
    if (rank() != root) str.resize(static_cast<size_t>(n));
    if (n > 0) broadcast(detail::byte_view(str.data(), str.size()), root);
}

void Communicator::send_string(const std::string& str, int peer) {
    check_host("send_string");
    int64_t n = static_cast<int64_t>(str.size());
    send(detail::byte_view(&n, sizeof(n)), peer);
    if (n > 0) send(detail::byte_view(const_cast<char*>(str.data()), str.size()), peer);
}

std::string Communicator::recv_string(int peer) {
    check_host("recv_string");
    int64_t n = 0;
    recv(detail::byte_view(&n, sizeof(n)), peer);
    FOT_CHECK(n >= 0, "recv_string: peer ", peer, " sent a negative length ", n);
    std::string str(static_cast<size_t>(n), '\0');
    if (n > 0) recv(detail::byte_view(str.data(), str.size()), peer);
    return str;
}

}  // namespace fot::parallel
