#include "runtime/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "runtime/core/status.h"

namespace fot {

int64_t shape_numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) {
        FOT_CHECK(d >= 0, "negative dimension in shape ", shape_str(s));
        FOT_CHECK(!__builtin_mul_overflow(n, d, &n), "shape ", shape_str(s),
                  " has more elements than fit in 64 bits");
    }
    return n;
}

size_t shape_nbytes(const Shape& s, DType t) {
    int64_t bytes = 0;
    FOT_CHECK(!__builtin_mul_overflow(shape_numel(s), static_cast<int64_t>(dtype_size(t)), &bytes),
              "a ", dtype_name(t), " tensor of shape ", shape_str(s),
              " has more bytes than fit in 64 bits");
    return static_cast<size_t>(bytes);
}

std::string shape_str(const Shape& s) {
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
    os << "]";
    return os.str();
}

namespace {

// 64-byte aligned host memory for a dtype x shape tensor, not initialised.
void* host_alloc(DType dtype, const Shape& shape, size_t* rounded_out) {
    const size_t bytes = shape_nbytes(shape, dtype);  // checks the shape
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) {
        FOT_THROW("out of host memory allocating ", bytes, " bytes for a ", dtype_name(dtype),
                  " tensor of shape ", shape_str(shape));
    }
    *rounded_out = rounded;
    return p;
}

}  // namespace

Buffer::Buffer(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
    size_t rounded = 0;
    data_ = host_alloc(dtype_, shape_, &rounded);
    std::memset(data_, 0, rounded);
    free_ = [](void* p) { std::free(p); };
}

Buffer Buffer::uninitialized(DType dtype, Shape shape) {
    size_t rounded = 0;
    void* p = host_alloc(dtype, shape, &rounded);
    return Buffer(p, dtype, std::move(shape), Device::cpu(), [](void* q) { std::free(q); });
}

Buffer::Buffer(void* data, DType dtype, Shape shape, Device device,
               std::function<void(void*)> free_fn)
    : data_(data),
      dtype_(dtype),
      shape_(std::move(shape)),
      device_(device),
      free_(std::move(free_fn)) {}

Buffer::~Buffer() {
    release();
}

void Buffer::release() {
    if (data_ && free_) free_(data_);
    data_ = nullptr;
}

Buffer::Buffer(Buffer&& o) noexcept
    : data_(o.data_),
      dtype_(o.dtype_),
      shape_(std::move(o.shape_)),
      device_(o.device_),
      free_(std::move(o.free_)) {
    o.data_ = nullptr;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        release();
        data_ = o.data_;
        dtype_ = o.dtype_;
        shape_ = std::move(o.shape_);
        device_ = o.device_;
        free_ = std::move(o.free_);
        o.data_ = nullptr;
    }
    return *this;
}

std::vector<Buffer> split_rows(Buffer whole, int64_t parts) {
    FOT_CHECK(parts >= 1 && !whole.shape().empty() && whole.shape()[0] % parts == 0,
              "split_rows: ", parts, " parts of a ", shape_str(whole.shape()), " tensor");
    Shape shape = whole.shape();
    shape[0] /= parts;
    const size_t part_bytes = shape_nbytes(shape, whole.dtype());
    const DType dtype = whole.dtype();
    const Device device = whole.device();
    auto* base = static_cast<uint8_t*>(whole.data());
    auto keep = std::make_shared<Buffer>(std::move(whole));
    std::vector<Buffer> out;
    out.reserve(static_cast<size_t>(parts));
    for (int64_t i = 0; i < parts; ++i) {
        void* p = base ? base + static_cast<size_t>(i) * part_bytes : nullptr;
        out.emplace_back(p, dtype, shape, device, [keep](void*) {});
    }
    return out;
}

}  // namespace fot
