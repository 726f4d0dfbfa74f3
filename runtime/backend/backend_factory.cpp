// make_backend: the only place in runtime/ that knows which backends were compiled in.
#include <memory>

#include "runtime/backend/backend.h"
#include "runtime/backend/cpu_backend.h"
#if FOT_HAVE_CUDA
#include "kernels/cuda/ops.h"
#include "runtime/backend/cuda_backend.h"
#endif
#include "runtime/core/status.h"

namespace fot {

std::unique_ptr<Backend> make_backend(const std::string& name, int device_index, int threads) {
    if (name == "cpu") return std::make_unique<CpuBackend>(threads);
    if (name == "cuda") {
#if FOT_HAVE_CUDA
        return std::make_unique<CudaBackend>(device_index);
#else
        FOT_THROW(
            "backend 'cuda' is not available: fotrt was built without CUDA "
            "(configure with -DFOT_CUDA=ON on a machine with the CUDA toolkit)");
#endif
    }
    FOT_THROW("unknown backend '", name, "' (expected cpu or cuda)");
}

int backend_device_count(const std::string& name) {
    if (name != "cuda") return 1;
#if FOT_HAVE_CUDA
    return kernels::cuda::device_count();
#else
    return 0;
#endif
}

TensorView first_rows(const TensorView& v, int64_t rows) {
    FOT_ASSERT(!v.shape.empty() && rows <= v.shape[0]);
    TensorView r = v;
    r.shape[0] = rows;
    return r;
}

TensorView slice_rows(const TensorView& v, int64_t begin, int64_t rows) {
    FOT_ASSERT(!v.shape.empty() && begin >= 0 && rows >= 0 && begin + rows <= v.shape[0]);
    int64_t row_elems = 1;
    for (size_t i = 1; i < v.shape.size(); ++i) row_elems *= v.shape[i];
    TensorView r = v;
    r.data =
        static_cast<char*>(v.data) + static_cast<size_t>(begin * row_elems) * dtype_size(v.dtype);
    r.shape[0] = rows;
    return r;
}

TensorView reshape(const TensorView& v, Shape shape) {
    TensorView r = v;
    r.shape = std::move(shape);
    FOT_ASSERT(r.numel() <= v.numel());
    return r;
}

}  // namespace fot

namespace fot {

void Backend::upload_rows(TensorView dst,
                          const std::function<void(void* host, int64_t row0, int64_t rows)>& fill) {
    FOT_ASSERT(!dst.shape.empty());
    const int64_t R = dst.shape[0];
    if (R == 0) return;
    if (dst.device.kind == DeviceKind::kCpu) {
        fill(dst.data, 0, R);
        return;
    }
    // A backend without its own staging: the whole tensor once in host memory.
    Buffer host = Buffer::uninitialized(dst.dtype, dst.shape);
    fill(host.data(), 0, R);
    upload(dst, host.data(), host.nbytes());
}

}  // namespace fot
