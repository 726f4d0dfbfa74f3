// Buffer (owning) and TensorView (non-owning) - the two ways memory is passed around.
//
// A Buffer owns one allocation (64-byte aligned host memory, or device memory obtained by a
// backend) and frees it on destruction; it is move-only. A TensorView is a plain value
// {data, dtype, shape, device} that never frees anything; its lifetime is bounded by the
// owner of the memory it points into (a Buffer, an mmap-ed checkpoint, a caller's vector).
// Tensors are dense and row-major; the last dimension is contiguous.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"

namespace fot {

using Shape = std::vector<int64_t>;

// Elements of a dense tensor of shape `s`. Shapes come from files and flags: a negative
// dimension or a product beyond int64 throws fot::Error naming the shape, because a wrapped
// product would size a buffer smaller than the tensor written into it.
int64_t shape_numel(const Shape& s);
// Bytes of a dense tensor: shape_numel(s) x dtype_size(t), with the same check (the result
// fits in int64, so sizes can be passed around as int64_t or size_t alike).
size_t shape_nbytes(const Shape& s, DType t);
// "[2, 3, 4]"
std::string shape_str(const Shape& s);

enum class DeviceKind { kCpu, kCuda };

struct Device {
    DeviceKind kind = DeviceKind::kCpu;
    int index = 0;
    static Device cpu() { return {}; }
    static Device cuda(int i) { return {DeviceKind::kCuda, i}; }
    bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
};

struct TensorView {
    void* data = nullptr;
    DType dtype = DType::kF32;
    Shape shape;
    Device device;

    int64_t numel() const { return shape_numel(shape); }
    size_t nbytes() const { return shape_nbytes(shape, dtype); }
    template <typename T>
    T* as() const {
        return static_cast<T*>(data);
    }
};

class Buffer {
  public:
    Buffer() = default;
    // Zero-initialised host memory for `shape` elements of `dtype`.
    Buffer(DType dtype, Shape shape);
    // Host memory like Buffer(dtype, shape) but left uninitialised: for buffers the caller
    // overwrites entirely (checkpoint loads, copies). Its pages are only committed when first
    // written, so a load touches each byte once instead of zero-filling it first.
    static Buffer uninitialized(DType dtype, Shape shape);
    // Takes ownership of memory allocated elsewhere (e.g. cudaMalloc); `free_fn` releases it.
    Buffer(void* data, DType dtype, Shape shape, Device device, std::function<void(void*)> free_fn);
    ~Buffer();
    Buffer(Buffer&& o) noexcept;
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    TensorView view() const { return {data_, dtype_, shape_, device_}; }
    void* data() const { return data_; }
    template <typename T>
    T* as() const {
        return static_cast<T*>(data_);
    }
    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    Device device() const { return device_; }
    int64_t numel() const { return shape_numel(shape_); }
    size_t nbytes() const { return shape_nbytes(shape_, dtype_); }
    bool empty() const { return data_ == nullptr; }

  private:
    void release();
    void* data_ = nullptr;
    DType dtype_ = DType::kF32;
    Shape shape_;
    Device device_;
    std::function<void(void*)> free_;
};

// `parts` Buffers of shape {rows / parts, ...} back to back in `whole` ({rows, ...}, rows a
// multiple of parts): part i starts i * rows / parts rows in, and every part keeps `whole`
// alive. Used for tensors that one batched GEMM reads or writes together (q|k|v and gate|up
// weights and outputs: CudaBackend::matmul_group needs one stride between the parts).
std::vector<Buffer> split_rows(Buffer whole, int64_t parts);

}  // namespace fot
