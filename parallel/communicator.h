// Communicator: the one interface every collective in fotrt goes through
// (docs/architecture.md §6; adding an implementation: §9.5).
//
// Modelled on NCCL: untyped data described by a TensorView, in place where that makes sense,
// the stream last. Implementations: SelfCommunicator (size 1, no MPI), the MPI communicator
// (host buffers; see mpi_session.h) and NcclCommunicator (device buffers; nccl_communicator.h).
//
// Contracts:
//  - Every member of a communicator must call the same collectives in the same order with
//    matching sizes, dtypes and roots; a mismatch is a bug that the watchdog turns into an
//    aborted world (see mpi_session.h), never a silent hang.
//  - Buffers must live on device() (host memory for MPI and Self). Views are dense; counts
//    may exceed INT_MAX (the MPI implementation chunks).
//  - Host implementations complete before returning and ignore the stream. NCCL enqueues on
//    the stream and returns; synchronise the stream before reading the result on the host.
//  - Bad arguments (wrong sizes, dtype, root or peer out of range, wrong device) throw
//    fot::Error naming the collective; they are detected on the calling rank before anything
//    is sent.
//  - A communicator is used by one thread at a time (the thread that owns the model step).
//  - Results of all_reduce are bitwise identical on every rank of the communicator.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/core/status.h"
#include "runtime/core/stream.h"
#include "runtime/core/tensor.h"

namespace fot::parallel {

enum class ReduceOp { kSum, kMax, kMin };
const char* reduce_op_name(ReduceOp op);

// A 1-D host view of n elements of a C++ scalar type, for control-plane and test code:
// comm.all_reduce_sum(host_view(v.data(), v.size())).
template <typename T>
TensorView host_view(T* data, int64_t n);

class Communicator {
  public:
    virtual ~Communicator() = default;

    virtual int rank() const = 0;
    virtual int size() const = 0;
    // Where buffers must live: Device::cpu() for MPI/Self, Device::cuda(i) for NCCL.
    virtual Device device() const = 0;
    // "self", "mpi" or "nccl"; used in messages.
    virtual const char* backend_name() const = 0;

    // ---- collectives (every rank calls them) -----------------------------------------------
    // In place: buf = op over all ranks of buf. dtypes: f32, i32, i64 everywhere; NCCL also
    // reduces bf16 and f16. The MPI f32 sum is computed in rank order, (x0 + x1) + x2 ...,
    // so it does not depend on the MPI library's algorithm.
    void all_reduce(TensorView buf, ReduceOp op, Stream s = {});
    void all_reduce_sum(TensorView buf, Stream s = {}) { all_reduce(buf, ReduceOp::kSum, s); }
    void all_reduce_max(TensorView buf, Stream s = {}) { all_reduce(buf, ReduceOp::kMax, s); }
    // out = concatenation of every rank's `in` in rank order; out.numel() == size() *
    // in.numel(), same dtype. Any dtype. `in` may alias out's own slot (in place).
    void all_gather(TensorView in, TensorView out, Stream s = {});
    // buf on every rank = buf on `root`. Any dtype.
    void broadcast(TensorView buf, int root, Stream s = {});
    // Point to point (peer != rank()). Messages between one pair arrive in send order; the
    // receiver's buffer must have exactly the sender's byte count.
    void send(TensorView buf, int peer, Stream s = {});
    void recv(TensorView buf, int peer, Stream s = {});
    // A symmetric exchange: send `send_buf` to `dst` and receive `recv_buf` from `src` as one
    // operation (NCCL: ncclSend/ncclRecv inside ncclGroupStart/End; MPI: both posted before
    // waiting), so a ring or pairwise swap where every rank sends first cannot deadlock.
    void sendrecv(TensorView send_buf, int dst, TensorView recv_buf, int src, Stream s = {});
    // Non-blocking: true when a message from `peer` is waiting to be received (a recv would
    // not block). Lets a coordinator serve requests between its own work. Implementations
    // without a probe answer true (the following recv then simply blocks).
    bool probe(int peer);
    void barrier();
    // Collective over this communicator: ranks with the same color form a new communicator,
    // ordered by (key, old rank). color < 0 means "not a member": that rank gets nullptr.
    // The child inherits this communicator's timeout.
    virtual std::unique_ptr<Communicator> split(int color, int key) const = 0;

    // ---- watchdog --------------------------------------------------------------------------
    // Seconds a blocking operation may wait before the world is aborted with a message naming
    // it (default: env FOT_COLLECTIVE_TIMEOUT, else 600). 0 disables the watchdog, e.g. on a
    // control-plane communicator where a leader idles waiting for requests.
    void set_timeout(double seconds);
    double timeout() const { return timeout_s_; }
    // The communicator's role, for messages: "world" (default), "tp", "mp" or "dp leaders"
    // (set by make_group_communicators).
    const std::string& group_name() const { return group_name_; }
    void set_group_name(std::string name) { group_name_ = std::move(name); }

    // ---- control plane helpers (host communicators only) -----------------------------------
    // Root's value is copied to every rank; other ranks' values are overwritten (vectors and
    // strings are resized). Two broadcasts: the length, then the data.
    template <typename T>
    void broadcast_value(T& value, int root);
    template <typename T>
    void broadcast_vector(std::vector<T>& v, int root);
    void broadcast_string(std::string& s, int root);
    // Length-prefixed point-to-point messages of any length.
    void send_string(const std::string& s, int peer);
    std::string recv_string(int peer);
    template <typename T>
    void send_vector(const std::vector<T>& v, int peer);
    template <typename T>
    std::vector<T> recv_vector(int peer);

  protected:
    Communicator();
    // Implementations receive validated arguments (sizes, dtypes, root/peer ranges, device).
    virtual void do_all_reduce(TensorView buf, ReduceOp op, Stream s) = 0;
    virtual void do_all_gather(TensorView in, TensorView out, Stream s) = 0;
    virtual void do_broadcast(TensorView buf, int root, Stream s) = 0;
    virtual void do_send(TensorView buf, int peer, Stream s) = 0;
    virtual void do_recv(TensorView buf, int peer, Stream s) = 0;
    virtual void do_sendrecv(TensorView send_buf, int dst, TensorView recv_buf, int src,
                             Stream s) = 0;
    virtual void do_barrier() = 0;
    virtual bool do_probe(int peer) { return true; }

    double timeout_s_;
    std::string group_name_ = "world";

  private:
    void check_buffer(const TensorView& v, const char* op, const char* what) const;
    void check_host(const char* op) const;
    void check_peer(int peer, const char* op) const;
};

// Seconds from FOT_COLLECTIVE_TIMEOUT (default 600; 0 = off). A malformed value throws
// fot::Error naming the variable.
double collective_timeout_from_env();

// ---- template definitions ------------------------------------------------------------------

namespace detail {
template <typename T>
constexpr DType dtype_of() {
    if constexpr (std::is_same_v<T, float>)
        return DType::kF32;
    else if constexpr (std::is_same_v<T, int32_t>)
        return DType::kI32;
    else if constexpr (std::is_same_v<T, int64_t>)
        return DType::kI64;
    else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, char>)
        return DType::kU8;
    else
        static_assert(sizeof(T) == 0, "host_view: no DType for this C++ type");
}
// A byte view over trivially copyable storage.
inline TensorView byte_view(void* data, size_t nbytes) {
    return TensorView{data, DType::kU8, {static_cast<int64_t>(nbytes)}, Device::cpu()};
}
}  // namespace detail

template <typename T>
TensorView host_view(T* data, int64_t n) {
    using U = std::remove_const_t<T>;
    return TensorView{const_cast<U*>(data), detail::dtype_of<U>(), {n}, Device::cpu()};
}

template <typename T>
void Communicator::broadcast_value(T& value, int root) {
    static_assert(std::is_trivially_copyable_v<T>, "broadcast_value needs a trivially copyable T");
    check_host("broadcast_value");
    broadcast(detail::byte_view(&value, sizeof(T)), root);
}

template <typename T>
void Communicator::broadcast_vector(std::vector<T>& v, int root) {
    static_assert(std::is_trivially_copyable_v<T>, "broadcast_vector needs a trivially copyable T");
    check_host("broadcast_vector");
    int64_t n = static_cast<int64_t>(v.size());
    broadcast_value(n, root);
    if (rank() != root) v.resize(static_cast<size_t>(n));
    if (n > 0) broadcast(detail::byte_view(v.data(), v.size() * sizeof(T)), root);
}

template <typename T>
void Communicator::send_vector(const std::vector<T>& v, int peer) {
    static_assert(std::is_trivially_copyable_v<T>, "send_vector needs a trivially copyable T");
    check_host("send_vector");
    int64_t n = static_cast<int64_t>(v.size());
    send(detail::byte_view(&n, sizeof(n)), peer);
    if (n > 0) send(detail::byte_view(const_cast<T*>(v.data()), v.size() * sizeof(T)), peer);
}

template <typename T>
std::vector<T> Communicator::recv_vector(int peer) {
    static_assert(std::is_trivially_copyable_v<T>, "recv_vector needs a trivially copyable T");
    check_host("recv_vector");
    int64_t n = 0;
    recv(detail::byte_view(&n, sizeof(n)), peer);
    FOT_CHECK(n >= 0, "recv_vector: peer ", peer, " sent a negative length ", n);
    std::vector<T> v(static_cast<size_t>(n));
    if (n > 0) recv(detail::byte_view(v.data(), v.size() * sizeof(T)), peer);
    return v;
}

}  // namespace fot::parallel
