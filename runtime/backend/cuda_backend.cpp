#include "runtime/backend/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "kernels/cuda/blas.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/ops.h"
#include "runtime/backend/cuda_phase_profiler.h"
#include "runtime/core/logging.h"
#include "runtime/core/status.h"

namespace fot {
namespace kc = kernels::cuda;

namespace {

// Scratch sizes: top-k scores are computed for as many (head, query) rows as fit here.
constexpr size_t kTopkScratchFloats = size_t{32} << 20;  // 128 MiB

int64_t rows_of(const TensorView& v) {
    return v.shape.empty() ? 1 : v.shape[0];
}
int64_t row_width(const TensorView& v) {
    return v.shape.empty() ? 1 : v.numel() / v.shape[0];
}

// Makes `device` current for a scope (Buffer deleters may run on any thread).
class DeviceGuard {
  public:
    explicit DeviceGuard(int device) {
        if (cudaGetDevice(&prev_) != cudaSuccess) prev_ = -1;
        if (prev_ != device) cudaSetDevice(device);
    }
    ~DeviceGuard() {
        if (prev_ >= 0) cudaSetDevice(prev_);
    }

  private:
    int prev_ = -1;
};

// Brackets one op with the profiler's events when profiling is on (set_profiling).
class ProfileScope {
  public:
    // op: the op's name in the per-op lines (by default the enclosing function's).
    ProfileScope(PhaseProfiler* p, Phase phase, double flops = 0, double bytes = 0,
                 const char* op = __builtin_FUNCTION())
        : p_(p) {
        if (p_) slot_ = p_->begin(phase, flops, bytes, op);
    }
    ~ProfileScope() {
        if (p_) p_->end(slot_);
    }
    ProfileScope(const ProfileScope&) = delete;
    ProfileScope& operator=(const ProfileScope&) = delete;

  private:
    PhaseProfiler* p_;
    size_t slot_ = 0;
};

// (query, key) pairs attn_accumulate visits: query t sees keys [0, min(S, t + co + 1)).
double visible_pairs(int64_t T, int64_t S, int64_t causal_offset) {
    if (causal_offset >= S) return static_cast<double>(T) * static_cast<double>(S);
    double n = 0;
    for (int64_t t = 0; t < T; ++t)
        n += static_cast<double>(std::clamp<int64_t>(t + causal_offset + 1, 0, S));
    return n;
}

}  // namespace

struct CudaBackend::Stats {
    std::atomic<int64_t> bytes{0}, peak{0}, count{0};
    // The backend's stream while the backend lives (buffers free stream-ordered on it), then
    // null (a buffer that outlives the backend frees with cudaFree).
    std::atomic<void*> stream{nullptr};
    // While a graph piece is captured, frees are held here (a cudaFreeAsync on the capturing
    // stream would become a node of the graph) and enqueued after the piece.
    std::atomic<bool> capturing{false};
    std::mutex held_mutex;
    std::vector<void*> held;
    // Frees p stream-ordered on the backend's stream, or holds it during a capture.
    void free_on_stream(void* p, void* live) {
        if (capturing.load()) {
            std::lock_guard<std::mutex> lock(held_mutex);
            held.push_back(p);
            return;
        }
        cudaFreeAsync(p, static_cast<cudaStream_t>(live));
    }
    void add(int64_t b) {
        const int64_t now = bytes.fetch_add(b) + b;
        int64_t p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        count.fetch_add(1);
    }
    void sub(int64_t b) { bytes.fetch_sub(b); }
};

// Grow-only device scratch.
struct CudaBackend::Scratch {
    void* ptr = nullptr;
    size_t bytes = 0;
};

struct CudaBackend::Graphs {
    bool enabled = true;
    bool capturing = false;
    int64_t rows = 0;  // of the piece being captured
    // Instantiated graphs by (piece, rows), and how many times in a row each was
    // re-instantiated because the update was refused.
    std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> exec;
    std::map<std::pair<int64_t, int64_t>, int> refused;
    int64_t launches = 0, instantiations = 0;
    cudaStream_t side = nullptr;  // allocations during a capture

    void disable(const char* what, cudaError_t e) {
        if (!enabled) return;
        enabled = false;
        FOT_LOG(kWarn) << "CUDA graphs off for this backend: " << what << " failed ("
                       << cudaGetErrorString(e) << "); decoding with ordinary launches";
    }
};

CudaBackend::CudaBackend(int device_index) : device_(device_index), stats_(new Stats) {
    const int count = kc::device_count();
    FOT_CHECK(count > 0,
              "backend 'cuda': no CUDA device is visible (no GPU, no driver, or "
              "CUDA_VISIBLE_DEVICES hides them); use --backend cpu");
    FOT_CHECK(device_index >= 0 && device_index < count, "backend 'cuda': device ", device_index,
              " does not exist (this node has ", count,
              " visible; the device is the node-local rank: start at most one rank per GPU)");
    FOT_CUDA_CHECK(cudaSetDevice(device_));
    FOT_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device_));
    cudaStream_t s = nullptr;
    // Non-blocking: never serialised with the legacy default stream. Collectives run on this
    // stream (Backend::stream()), so nothing needs the implicit ordering.
    FOT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    stream_ = s;
    stats_->stream = stream_;
    // Stream-ordered allocations come from the device's default pool; keep freed memory
    // cached in it (no release at synchronisation points) so steady-state steps reuse it.
    cudaMemPool_t pool = nullptr;
    FOT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_));
    uint64_t keep = UINT64_MAX;
    FOT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    cudaEvent_t e = nullptr;
    FOT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    ids_event_ = e;
    gemm_scratch_ = std::make_unique<Scratch>();
    attn_scratch_ = std::make_unique<Scratch>();
    topk_scratch_ = std::make_unique<Scratch>();
    copy_scratch_ = std::make_unique<Scratch>();
    ids_scratch_ = std::make_unique<Scratch>();
    tickets_ = std::make_unique<Scratch>();
    blas_ = std::make_unique<kc::Blas>(stream_);
    graphs_ = std::make_unique<Graphs>();
    const char* g = std::getenv("FOT_CUDA_GRAPH");
    graphs_->enabled = !(g && std::strcmp(g, "0") == 0);
}

CudaBackend::~CudaBackend() {
    DeviceGuard g(device_);
    if (graphs_->capturing) graph_abort();
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
    for (auto& [key, e] : graphs_->exec) cudaGraphExecDestroy(e);
    if (graphs_->side) cudaStreamDestroy(graphs_->side);
    stats_->stream = nullptr;
    blas_.reset();
    for (Scratch* s : {gemm_scratch_.get(), attn_scratch_.get(), topk_scratch_.get(),
                       copy_scratch_.get(), ids_scratch_.get(), tickets_.get()}) {
        if (s && s->ptr) cudaFree(s->ptr);
    }
    if (ids_host_) cudaFreeHost(ids_host_);
    for (void* h : staging_) {
        if (h) cudaFreeHost(h);
    }
    for (void* e : staging_event_) {
        if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
    }
    if (ids_event_) cudaEventDestroy(static_cast<cudaEvent_t>(ids_event_));
    if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void CudaBackend::check_device(const TensorView& v, const char* what) const {
    FOT_CHECK(v.device.kind == DeviceKind::kCuda && v.device.index == device_,
              "cuda backend: ", what, " is not memory of cuda:", device_,
              v.device.kind == DeviceKind::kCpu ? " (it is host memory)" : "");
}

void CudaBackend::check_f32(const TensorView& v, const char* what) const {
    check_device(v, what);
    FOT_CHECK(v.dtype == DType::kF32, "cuda backend: ", what, " must be f32, is ",
              dtype_name(v.dtype));
}

void CudaBackend::check_float(const TensorView& v, const char* what) const {
    check_device(v, what);
    FOT_CHECK(v.dtype == DType::kF32 || v.dtype == DType::kBF16 || v.dtype == DType::kF16,
              "cuda backend: ", what, " must be f32, bf16 or f16, is ", dtype_name(v.dtype));
}

DType CudaBackend::gemm_input_dtype(DType w_dtype) const {
    // cuBLAS and the GEMV multiply x rounded to the weight's type (kernels/cuda/blas.h).
    return w_dtype == DType::kBF16 || w_dtype == DType::kF16 ? w_dtype : DType::kF32;
}

void* CudaBackend::scratch(Scratch& s, size_t bytes) {
    if (bytes <= s.bytes) return s.ptr;
    // Stream-ordered: the old buffer is freed after the work already enqueued that uses it,
    // and the new one is valid for work enqueued after this call; no synchronisation.
    const size_t want = std::max(bytes, s.bytes + s.bytes / 2);
    if (s.ptr) {
        stats_->free_on_stream(s.ptr, stream_);
        stats_->sub(static_cast<int64_t>(s.bytes));
        s.ptr = nullptr;
        s.bytes = 0;
    }
    cudaError_t rc = cudaMallocAsync(&s.ptr, want, static_cast<cudaStream_t>(alloc_stream()));
    if (rc != cudaSuccess) {
        cudaGetLastError();
        s.ptr = nullptr;
        FOT_THROW("cuda backend: out of device memory: scratch of ", want,
                  " bytes on cuda:", device_, " (", cudaGetErrorString(rc), ")");
    }
    s.bytes = want;
    stats_->add(static_cast<int64_t>(want));
    // Work on the backend's stream may use it now (a side-stream allocation must be done).
    if (graphs_->capturing) FOT_CUDA_CHECK(cudaStreamSynchronize(graphs_->side));
    return s.ptr;
}

void* CudaBackend::alloc_stream() {
    if (!graphs_->capturing) return stream_;
    if (!graphs_->side)
        FOT_CUDA_CHECK(cudaStreamCreateWithFlags(&graphs_->side, cudaStreamNonBlocking));
    return graphs_->side;
}

void CudaBackend::zero_fill(void* p, size_t bytes) {
    auto st = static_cast<cudaStream_t>(alloc_stream());
    FOT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, st));
    if (graphs_->capturing) FOT_CUDA_CHECK(cudaStreamSynchronize(st));
}

void CudaBackend::release_held_frees() {
    std::vector<void*> held;
    {
        std::lock_guard<std::mutex> lock(stats_->held_mutex);
        held.swap(stats_->held);
    }
    for (void* p : held) cudaFreeAsync(p, static_cast<cudaStream_t>(stream_));
}

void CudaBackend::check_gemm_input(const TensorView& x, DType w_dtype) const {
    FOT_CHECK(x.dtype == DType::kF32 || x.dtype == gemm_input_dtype(w_dtype),
              "cuda backend: matmul input is ", dtype_name(x.dtype), ", expected f32 or ",
              dtype_name(gemm_input_dtype(w_dtype)), " for ", dtype_name(w_dtype), " weights");
}

unsigned* CudaBackend::split_tickets(int64_t H) {
    // Zeroed once when (re)allocated; every kernel that counts in them leaves them zeroed (the
    // decode attention's per-head tickets, the add + RMSNorm GEMV's one ticket).
    const size_t bytes = sizeof(unsigned) * static_cast<size_t>(std::max<int64_t>(H, 1));
    const bool grow = bytes > tickets_->bytes;
    void* p = scratch(*tickets_, bytes);
    if (grow) zero_fill(p, tickets_->bytes);
    return static_cast<unsigned*>(p);
}

int64_t CudaBackend::allocated_bytes() const {
    return stats_->bytes.load();
}
int64_t CudaBackend::peak_allocated_bytes() const {
    return stats_->peak.load();
}
int64_t CudaBackend::allocation_count() const {
    return stats_->count.load();
}

// ---- memory ------------------------------------------------------------------------------------

Buffer CudaBackend::alloc(DType dtype, Shape shape) {
    return alloc_impl(dtype, std::move(shape), /*zero=*/true);
}

Buffer CudaBackend::alloc_uninitialized(DType dtype, Shape shape) {
    return alloc_impl(dtype, std::move(shape), /*zero=*/false);
}

Buffer CudaBackend::alloc_impl(DType dtype, Shape shape, bool zero) {
    const size_t bytes = shape_nbytes(shape, dtype);  // throws on a negative or huge shape
    const Device dev = Device::cuda(device_);
    if (bytes == 0) return Buffer(nullptr, dtype, std::move(shape), dev, [](void*) {});
    void* p = nullptr;
    auto st = static_cast<cudaStream_t>(alloc_stream());
    cudaError_t rc = cudaMallocAsync(&p, bytes, st);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        FOT_THROW("cuda backend: out of device memory allocating ", bytes, " bytes for a ",
                  dtype_name(dtype), " tensor ", shape_str(shape), " on cuda:", device_, " (",
                  free_b >> 20, " MiB free of ", total_b >> 20,
                  " MiB); use more memory-parallel ranks (--mp), a smaller memory capacity, or "
                  "bf16 memory");
    }
    stats_->add(static_cast<int64_t>(bytes));
    // Zero-fill on our stream: later ops on it see zeros (other streams must order after it).
    rc = zero ? cudaMemsetAsync(p, 0, bytes, st) : cudaSuccess;
    // During a capture the buffer is made on the side stream: done before work uses it.
    if (rc == cudaSuccess && graphs_->capturing) rc = cudaStreamSynchronize(st);
    if (rc != cudaSuccess) {
        cudaFreeAsync(p, st);
        stats_->sub(static_cast<int64_t>(bytes));
        FOT_CUDA_CHECK(rc);
    }
    const int device = device_;
    std::shared_ptr<Stats> stats = stats_;
    return Buffer(p, dtype, std::move(shape), dev, [device, stats, bytes](void* q) {
        DeviceGuard g(device);
        // Stream-ordered on the backend's stream (after the work enqueued on q; no device
        // sync). Once the backend is gone its stream was synchronised: plain cudaFree.
        if (void* live = stats->stream.load()) {
            stats->free_on_stream(q, live);
        } else {
            cudaFree(q);
        }
        stats->sub(static_cast<int64_t>(bytes));
    });
}

void CudaBackend::upload(TensorView dst, const void* host_src, size_t bytes) {
    check_device(dst, "upload destination");
    FOT_ASSERT(bytes <= dst.nbytes());
    if (bytes == 0) return;
    auto s = static_cast<cudaStream_t>(stream_);
    FOT_CUDA_CHECK(cudaMemcpyAsync(dst.data, host_src, bytes, cudaMemcpyHostToDevice, s));
    FOT_CUDA_CHECK(cudaStreamSynchronize(s));
}

void CudaBackend::upload_rows(
    TensorView dst, const std::function<void(void* host, int64_t row0, int64_t rows)>& fill) {
    check_device(dst, "upload destination");
    FOT_ASSERT(!dst.shape.empty());
    const int64_t R = dst.shape[0];
    const size_t bytes = dst.nbytes();
    if (R == 0 || bytes == 0) return;
    const size_t row_bytes = bytes / static_cast<size_t>(R);
    auto s = static_cast<cudaStream_t>(stream_);
    const size_t want = std::max(kUploadStagingBytes, row_bytes);
    if (staging_bytes_ < want) {
        // The copies still reading the old buffers must finish before they are freed.
        FOT_CUDA_CHECK(cudaStreamSynchronize(s));
        for (void*& h : staging_) {
            if (h) cudaFreeHost(h);
            h = nullptr;
        }
        staging_bytes_ = 0;
        for (void*& h : staging_) FOT_CUDA_CHECK(cudaHostAlloc(&h, want, cudaHostAllocDefault));
        for (void*& e : staging_event_) {
            if (e) continue;
            cudaEvent_t ev = nullptr;
            FOT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
            e = ev;
        }
        staging_bytes_ = want;
    }
    const int64_t block = static_cast<int64_t>(staging_bytes_ / row_bytes);
    auto* d = static_cast<char*>(dst.data);
    // Double buffering: the host fills one staging buffer while the other one's copy runs.
    int k = 0;
    for (int64_t r = 0; r < R; r += block, k ^= 1) {
        const int64_t n = std::min(block, R - r);
        auto ev = static_cast<cudaEvent_t>(staging_event_[k]);
        FOT_CUDA_CHECK(cudaEventSynchronize(ev));  // the last copy out of staging k is done
        fill(staging_[k], r, n);
        FOT_CUDA_CHECK(cudaMemcpyAsync(d + static_cast<size_t>(r) * row_bytes, staging_[k],
                                       static_cast<size_t>(n) * row_bytes, cudaMemcpyHostToDevice,
                                       s));
        FOT_CUDA_CHECK(cudaEventRecord(ev, s));
    }
    FOT_CUDA_CHECK(cudaStreamSynchronize(s));
}

void CudaBackend::download(void* host_dst, TensorView src, size_t bytes) {
    check_device(src, "download source");
    FOT_ASSERT(bytes <= src.nbytes());
    if (bytes == 0) return;
    auto s = static_cast<cudaStream_t>(stream_);
    FOT_CUDA_CHECK(cudaMemcpyAsync(host_dst, src.data, bytes, cudaMemcpyDeviceToHost, s));
    FOT_CUDA_CHECK(cudaStreamSynchronize(s));
}

void CudaBackend::copy_rows(TensorView dst, int64_t dst_row, TensorView src, int64_t rows) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0,
                      2.0 * static_cast<double>(rows) * static_cast<double>(src.nbytes()) /
                          static_cast<double>(std::max<int64_t>(rows_of(src), 1)));
    check_device(dst, "copy destination");
    check_device(src, "copy source");
    FOT_ASSERT(dst.dtype == src.dtype && row_width(dst) == row_width(src));
    FOT_ASSERT(dst_row >= 0 && dst_row + rows <= rows_of(dst) && rows <= rows_of(src));
    const size_t row_bytes = static_cast<size_t>(row_width(src)) * dtype_size(src.dtype);
    const size_t bytes = static_cast<size_t>(rows) * row_bytes;
    if (bytes == 0) return;
    char* d = static_cast<char*>(dst.data) + dst_row * row_bytes;
    const char* sp = static_cast<const char*>(src.data);
    auto s = static_cast<cudaStream_t>(stream_);
    const bool overlap = d < sp + bytes && sp < d + bytes;
    if (!overlap) {
        FOT_CUDA_CHECK(cudaMemcpyAsync(d, sp, bytes, cudaMemcpyDeviceToDevice, s));
        return;
    }
    // memmove semantics (the CPU backend's): through scratch.
    void* tmp = scratch(*copy_scratch_, bytes);
    FOT_CUDA_CHECK(cudaMemcpyAsync(tmp, sp, bytes, cudaMemcpyDeviceToDevice, s));
    FOT_CUDA_CHECK(cudaMemcpyAsync(d, tmp, bytes, cudaMemcpyDeviceToDevice, s));
}

// ---- dense ops ---------------------------------------------------------------------------------

const int32_t* CudaBackend::upload_ids(const int32_t* host_ids, int64_t T) {
    const size_t bytes = static_cast<size_t>(T) * sizeof(int32_t);
    auto s = static_cast<cudaStream_t>(stream_);
    auto ev = static_cast<cudaEvent_t>(ids_event_);
    // The staging buffer may still be read by the previous call's copy.
    FOT_CUDA_CHECK(cudaEventSynchronize(ev));
    if (bytes > ids_host_bytes_) {
        if (ids_host_) cudaFreeHost(ids_host_);
        ids_host_ = nullptr;
        ids_host_bytes_ = 0;
        const size_t want = std::max<size_t>(bytes, 4096);
        FOT_CUDA_CHECK(cudaHostAlloc(&ids_host_, want, cudaHostAllocDefault));
        ids_host_bytes_ = want;
    }
    std::memcpy(ids_host_, host_ids, bytes);
    void* ids_dev = scratch(*ids_scratch_, std::max<size_t>(bytes, 4096));
    FOT_CUDA_CHECK(cudaMemcpyAsync(ids_dev, ids_host_, bytes, cudaMemcpyHostToDevice, s));
    FOT_CUDA_CHECK(cudaEventRecord(ev, s));
    return static_cast<const int32_t*>(ids_dev);
}

void CudaBackend::logsoftmax_parts(TensorView parts, TensorView logits, const int32_t* host_targets,
                                   int64_t vocab_begin) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0, static_cast<double>(logits.nbytes()));
    check_f32(parts, "log-softmax parts");
    check_f32(logits, "logits");
    const int64_t T = rows_of(logits);
    FOT_ASSERT(parts.numel() == 3 * T);
    if (T == 0) return;
    const int32_t* targets = upload_ids(host_targets, T);
    kc::logsoftmax_parts(parts.as<float>(), logits.as<float>(), T, row_width(logits), targets,
                         vocab_begin, stream_);
}

void CudaBackend::embedding(TensorView out, const int32_t* host_ids, TensorView table,
                            int64_t row_begin) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0, static_cast<double>(2 * out.nbytes()));
    check_f32(out, "embedding output");
    check_device(table, "embedding table");
    FOT_ASSERT(table.shape.size() == 2 && row_width(out) == table.shape[1]);
    const int64_t T = rows_of(out);
    if (T == 0) return;
    if (T <= kc::kInlineIds) {
        kc::InlineIds ids = {};
        std::copy(host_ids, host_ids + T, ids.v);
        kc::embedding_inline(out.as<float>(), ids, table.data, table.dtype, T, table.shape[1],
                             row_begin, table.shape[0], stream_);
        return;
    }
    const int32_t* ids_dev = upload_ids(host_ids, T);
    kc::embedding(out.as<float>(), ids_dev, table.data, table.dtype, T, table.shape[1], row_begin,
                  table.shape[0], stream_);
}

void CudaBackend::rmsnorm(TensorView out, TensorView x, TensorView w, float eps) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0,
                      static_cast<double>(x.nbytes() + out.nbytes() + w.nbytes()));
    check_float(out, "rmsnorm output");
    check_f32(x, "rmsnorm input");
    check_f32(w, "rmsnorm weight");
    FOT_ASSERT(out.numel() == x.numel() && w.numel() == row_width(x));
    kc::rmsnorm(out.data, out.dtype, x.as<float>(), w.as<float>(), rows_of(x), row_width(x), eps,
                stream_);
}

void CudaBackend::add_rmsnorm(TensorView out, TensorView x, TensorView r, TensorView w, float eps) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0,
                      static_cast<double>(2 * x.nbytes() + r.nbytes() + out.nbytes() + w.nbytes()));
    check_float(out, "add_rmsnorm output");
    check_f32(x, "add_rmsnorm residual stream");
    check_f32(r, "add_rmsnorm addend");
    check_f32(w, "add_rmsnorm weight");
    FOT_ASSERT(out.numel() == x.numel() && r.numel() == x.numel() && w.numel() == row_width(x));
    kc::add_rmsnorm(out.data, out.dtype, x.as<float>(), r.as<float>(), w.as<float>(), rows_of(x),
                    row_width(x), eps, stream_);
}

void CudaBackend::matmul(TensorView out, TensorView x, TensorView w) {
    check_f32(out, "matmul output");
    check_float(x, "matmul input");
    check_device(w, "matmul weight");
    check_gemm_input(x, w.dtype);
    FOT_ASSERT(w.shape.size() == 2);
    const int64_t T = rows_of(x), K = row_width(x), N = w.shape[0];
    FOT_ASSERT(w.shape[1] == K && rows_of(out) == T && row_width(out) == N);
    ProfileScope prof(
        profiler_.get(), Phase::kGemm,
        2.0 * static_cast<double>(T) * static_cast<double>(N) * static_cast<double>(K),
        static_cast<double>(w.nbytes()) + static_cast<double>(x.nbytes()) +
            4.0 * static_cast<double>(T * N));
    if (kc::gemv_supported(x.data, x.dtype, w.data, w.dtype, T, K)) {
        // Decode-sized: one pass over the weights, no separate conversion of x.
        kc::gemv(out.as<float>(), x.data, x.dtype, w.data, w.dtype, T, N, K, stream_);
        return;
    }
    const size_t need = kc::Blas::scratch_bytes(x.dtype, w.dtype, T, K);
    void* xl = need > 0 ? scratch(*gemm_scratch_, need) : nullptr;
    blas_->matmul(out.as<float>(), x.data, x.dtype, w.data, w.dtype, T, N, K, xl);
}

void CudaBackend::matmul_group(TensorView x, std::initializer_list<MatmulTarget> targets) {
    // Decode-sized with weights of one dtype: one GEMV launch for all (same bits as separate).
    const int64_t T = rows_of(x), K = row_width(x);
    bool grouped = targets.size() >= 2 && targets.size() <= kc::kGemvMaxGroup;
    for (const MatmulTarget& t : targets) {
        grouped = grouped && t.w.dtype == targets.begin()->w.dtype && t.out.dtype == DType::kF32 &&
                  t.w.shape.size() == 2 && t.w.shape[1] == K && rows_of(t.out) == T &&
                  row_width(t.out) == t.w.shape[0] &&
                  kc::gemv_supported(x.data, x.dtype, t.w.data, t.w.dtype, T, K);
    }
    if (!grouped) {
        if (!matmul_batched(x, targets)) Backend::matmul_group(x, targets);
        return;
    }
    const DType wdt = targets.begin()->w.dtype;
    check_float(x, "matmul input");
    check_gemm_input(x, wdt);
    kc::GemvTarget g[kc::kGemvMaxGroup];
    int n = 0;
    double flops = 0, bytes = static_cast<double>(x.nbytes());
    for (const MatmulTarget& t : targets) {
        check_device(t.out, "matmul output");
        check_device(t.w, "matmul weight");
        g[n++] = {t.out.as<float>(), t.w.data, t.w.shape[0]};
        flops += 2.0 * static_cast<double>(T) * static_cast<double>(t.w.shape[0]) *
                 static_cast<double>(K);
        bytes += static_cast<double>(t.w.nbytes()) + static_cast<double>(t.out.nbytes());
    }
    ProfileScope prof(profiler_.get(), Phase::kGemm, flops, bytes);
    kc::gemv_group(g, n, x.data, x.dtype, wdt, T, K, stream_);
}

void CudaBackend::matmul_silu_mul(TensorView act, TensorView gate, TensorView up, TensorView x,
                                  TensorView w_gate, TensorView w_up) {
    // Decode-sized with weights of one dtype: the gate|up GEMV writes act itself.
    const int64_t T = rows_of(x), K = row_width(x);
    const DType wdt = w_gate.dtype;
    const bool fused = w_up.dtype == wdt && w_gate.shape.size() == 2 &&
                       w_up.shape == w_gate.shape && w_gate.shape[1] == K && rows_of(act) == T &&
                       row_width(act) == w_gate.shape[0] &&
                       (act.dtype == DType::kF32 || act.dtype == gemm_input_dtype(wdt)) &&
                       (act.dtype == DType::kF32 || act.dtype == wdt) &&
                       kc::gemv_supported(x.data, x.dtype, w_gate.data, wdt, T, K) &&
                       kc::gemv_supported(x.data, x.dtype, w_up.data, wdt, T, K);
    if (!fused) {
        Backend::matmul_silu_mul(act, gate, up, x, w_gate, w_up);
        return;
    }
    check_float(x, "matmul input");
    check_float(act, "silu_mul output");
    check_device(w_gate, "matmul weight");
    check_device(w_up, "matmul weight");
    check_gemm_input(x, wdt);
    const int64_t I = w_gate.shape[0];
    ProfileScope prof(
        profiler_.get(), Phase::kGemm,
        4.0 * static_cast<double>(T) * static_cast<double>(I) * static_cast<double>(K),
        static_cast<double>(w_gate.nbytes()) + static_cast<double>(w_up.nbytes()) +
            static_cast<double>(x.nbytes()) + static_cast<double>(act.nbytes()));
    kc::gemv_silu_mul(act.data, act.dtype, x.data, x.dtype, w_gate.data, w_up.data, wdt, T, I, K,
                      stream_);
}

namespace {
// FOT_CUDA_GEMV_NORM=0 runs matmul_add_rmsnorm as its two ops (benchmark comparisons; the same
// bits either way). Read once.
bool gemv_norm_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("FOT_CUDA_GEMV_NORM");
        const std::string v = e ? e : "";
        FOT_CHECK(v.empty() || v == "0" || v == "1", "FOT_CUDA_GEMV_NORM='", v,
                  "' is not 1 (default) or 0");
        return v != "0";
    }();
    return on;
}
}  // namespace

void CudaBackend::matmul_add_rmsnorm(TensorView xn, TensorView x, TensorView proj, TensorView a,
                                     TensorView w, TensorView norm_w, float eps) {
    // Decode-sized: the GEMV's last block does add_rmsnorm's work, one launch instead of two.
    const int64_t T = rows_of(a), K = row_width(a);
    const bool fused =
        gemv_norm_enabled() && w.shape.size() == 2 && w.shape[1] == K && x.dtype == DType::kF32 &&
        proj.dtype == DType::kF32 && norm_w.dtype == DType::kF32 && rows_of(x) == T &&
        rows_of(proj) == T && rows_of(xn) == T && row_width(x) == w.shape[0] &&
        row_width(proj) == w.shape[0] && row_width(xn) == w.shape[0] &&
        norm_w.numel() == w.shape[0] && (xn.dtype == DType::kF32 || xn.dtype == w.dtype) &&
        kc::gemv_supported(a.data, a.dtype, w.data, w.dtype, T, K);
    if (!fused) {
        Backend::matmul_add_rmsnorm(xn, x, proj, a, w, norm_w, eps);
        return;
    }
    check_float(a, "matmul input");
    check_float(xn, "add_rmsnorm output");
    check_device(w, "matmul weight");
    check_device(x, "add_rmsnorm residual stream");
    check_device(norm_w, "add_rmsnorm weight");
    check_gemm_input(a, w.dtype);
    const int64_t C = w.shape[0];
    ProfileScope prof(
        profiler_.get(), Phase::kGemm,
        2.0 * static_cast<double>(T) * static_cast<double>(C) * static_cast<double>(K),
        static_cast<double>(w.nbytes()) + static_cast<double>(a.nbytes()) +
            static_cast<double>(proj.nbytes()) + 2.0 * static_cast<double>(x.nbytes()) +
            static_cast<double>(xn.nbytes()));
    kc::gemv_add_rmsnorm(proj.as<float>(), xn.data, xn.dtype, x.as<float>(), norm_w.as<float>(),
                         eps, a.data, a.dtype, w.data, w.dtype, T, C, K, split_tickets(1), stream_);
}

bool CudaBackend::matmul_batched(TensorView x, std::initializer_list<MatmulTarget> targets) {
    // Weights of one shape and dtype one stride apart, outputs likewise (load_model_weights and
    // LongLlama lay out q|k|v and gate|up so): one strided-batched cuBLAS GEMM.
    if (targets.size() < 2) return false;
    const MatmulTarget* t = targets.begin();
    const int64_t n = static_cast<int64_t>(targets.size());
    const TensorView &w0 = t[0].w, &o0 = t[0].out;
    if (w0.shape.size() != 2 || o0.dtype != DType::kF32 || w0.data == nullptr ||
        o0.data == nullptr) {
        return false;
    }
    const int64_t T = rows_of(x), K = row_width(x), N = w0.shape[0];
    const auto at = [](const TensorView& v) { return reinterpret_cast<intptr_t>(v.data); };
    const intptr_t w_step = at(t[1].w) - at(w0), o_step = at(t[1].out) - at(o0);
    const int64_t esz = static_cast<int64_t>(dtype_size(w0.dtype));
    // Weights back to back only (split_rows): two separately allocated matrices are always "one
    // stride apart", and whether a pair then took this path would depend on where the allocator
    // put them (a negative or arbitrary stride, and other bits than two GEMMs).
    bool ok = w0.shape[1] == K && rows_of(o0) == T && row_width(o0) == N &&
              w_step == N * K * esz && o_step % 4 == 0 && o_step >= T * N * 4;
    for (int64_t i = 0; ok && i < n; ++i) {
        ok = t[i].w.dtype == w0.dtype && t[i].w.shape == w0.shape && t[i].out.dtype == o0.dtype &&
             t[i].out.shape == o0.shape && at(t[i].w) == at(w0) + i * w_step &&
             at(t[i].out) == at(o0) + i * o_step;
    }
    if (!ok) return false;
    check_float(x, "matmul input");
    check_gemm_input(x, w0.dtype);
    for (int64_t i = 0; i < n; ++i) {
        check_device(t[i].out, "matmul output");
        check_device(t[i].w, "matmul weight");
    }
    const double nd = static_cast<double>(n);
    ProfileScope prof(
        profiler_.get(), Phase::kGemm,
        nd * 2.0 * static_cast<double>(T) * static_cast<double>(N) * static_cast<double>(K),
        nd * (static_cast<double>(w0.nbytes()) + 4.0 * static_cast<double>(T * N)) +
            static_cast<double>(x.nbytes()));
    const size_t need = kc::Blas::scratch_bytes(x.dtype, w0.dtype, T, K);
    void* xl = need > 0 ? scratch(*gemm_scratch_, need) : nullptr;
    blas_->matmul_batched(o0.as<float>(), o_step / 4, x.data, x.dtype, w0.data, w_step / esz,
                          w0.dtype, n, T, N, K, xl);
    return true;
}

void CudaBackend::rope(TensorView x, int64_t H, int64_t D, int64_t first_pos, float theta) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0, static_cast<double>(2 * x.nbytes()));
    check_f32(x, "rope input");
    FOT_ASSERT(row_width(x) >= H * D && D % 2 == 0);
    kc::rope(x.as<float>(), rows_of(x), H, D, row_width(x), first_pos, theta, stream_);
}

void CudaBackend::silu_mul(TensorView out, TensorView gate, TensorView up) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0,
                      static_cast<double>(gate.nbytes() + up.nbytes() + out.nbytes()));
    check_float(out, "silu_mul output");
    check_f32(gate, "silu_mul gate");
    check_f32(up, "silu_mul up");
    FOT_ASSERT(out.numel() == gate.numel() && out.numel() == up.numel());
    kc::silu_mul(out.data, out.dtype, gate.as<float>(), up.as<float>(), out.numel(), stream_);
}

void CudaBackend::add(TensorView out, TensorView a, TensorView b) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0,
                      static_cast<double>(a.nbytes() + b.nbytes() + out.nbytes()));
    check_f32(out, "add output");
    check_f32(a, "add input a");
    check_f32(b, "add input b");
    FOT_ASSERT(out.numel() == a.numel() && out.numel() == b.numel());
    kc::add(out.as<float>(), a.as<float>(), b.as<float>(), out.numel(), stream_);
}

// ---- attention ---------------------------------------------------------------------------------

void CudaBackend::attn_partial_init(TensorView part) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0, static_cast<double>(part.nbytes()));
    check_f32(part, "attention partial");
    FOT_ASSERT(part.shape.size() == 3);
    kc::attn_partial_init(part.as<float>(), part.shape[0], part.shape[1], part.shape[2] - 2,
                          stream_);
}

void CudaBackend::attn_accumulate(TensorView part, TensorView q, TensorView k, TensorView v,
                                  int64_t S, float scale, int64_t causal_offset) {
    check_f32(part, "attention partial");
    check_f32(q, "attention queries");
    check_device(k, "attention keys");
    check_device(v, "attention values");
    FOT_ASSERT(part.shape.size() == 3 && k.shape.size() == 3);
    const int64_t H = part.shape[0], T = part.shape[1], D = part.shape[2] - 2;
    FOT_ASSERT(k.shape[0] == H && k.shape[2] == D && S <= k.shape[1]);
    FOT_ASSERT(k.dtype == v.dtype && k.shape == v.shape);
    FOT_ASSERT(rows_of(q) == T && row_width(q) >= H * D);
    ProfileScope prof(
        profiler_.get(), causal_offset < S ? Phase::kLocalAttention : Phase::kMemoryAttention,
        profiler_ ? 4.0 * static_cast<double>(H * D) * visible_pairs(T, S, causal_offset) : 0.0,
        2.0 * static_cast<double>(H * std::max<int64_t>(S, 0) * D) * dtype_size(k.dtype));
    // The tensor-core kernel's blocks take 64 or 128 queries (attention_tc.cu).
    const bool tc =
        precision_ == Precision::kFast &&
        kc::attn_accumulate_tc_supported(k.data, v.data, k.dtype, k.shape[1] * D, D, scale);
    const int64_t splits = kc::attn_accumulate_splits(H, T, S, D, causal_offset, sm_count_,
                                                      tc ? 64 * kc::attn_tc_m_tiles(T, D) : 64);
    float* sc = nullptr;
    if (splits > 1) {
        sc = static_cast<float*>(
            scratch(*attn_scratch_, sizeof(float) * static_cast<size_t>(splits * H * T * (D + 2))));
    }
    kc::attn_accumulate(part.as<float>(), q.as<float>(), row_width(q), k.data, v.data, k.dtype,
                        k.shape[1] * D, H, T, S, D, scale, causal_offset,
                        precision_ == Precision::kFast, splits, sc,
                        splits > 1 ? split_tickets(H) : nullptr, stream_);
}

void CudaBackend::attn_partial_merge(TensorView out, TensorView parts) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0,
                      static_cast<double>(parts.nbytes() + out.nbytes()));
    check_f32(out, "attention partial");
    check_f32(parts, "attention partials");
    FOT_ASSERT(out.shape.size() == 3 && parts.shape.size() == 4);
    const int64_t R = parts.shape[0], H = out.shape[0], T = out.shape[1], D = out.shape[2] - 2;
    FOT_ASSERT(parts.shape[1] == H && parts.shape[2] == T && parts.shape[3] == D + 2);
    kc::attn_partial_merge(out.as<float>(), parts.as<float>(), R, H, T, D, stream_);
}

void CudaBackend::attn_partial_finalize(TensorView out, TensorView part) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0,
                      static_cast<double>(part.nbytes() + out.nbytes()));
    check_float(out, "attention output");
    check_f32(part, "attention partial");
    FOT_ASSERT(part.shape.size() == 3);
    const int64_t H = part.shape[0], T = part.shape[1], D = part.shape[2] - 2;
    FOT_ASSERT(rows_of(out) == T && row_width(out) >= H * D);
    kc::attn_partial_finalize(out.data, out.dtype, row_width(out), part.as<float>(), H, T, D,
                              stream_);
}

void CudaBackend::attn_one_store(TensorView out, TensorView part, TensorView q, TensorView k,
                                 TensorView v, int64_t S, float scale, int64_t causal_offset) {
    check_float(out, "attention output");
    check_f32(part, "attention partial");
    check_f32(q, "attention queries");
    check_device(k, "attention keys");
    check_device(v, "attention values");
    FOT_ASSERT(part.shape.size() == 3 && k.shape.size() == 3);
    const int64_t H = part.shape[0], T = part.shape[1], D = part.shape[2] - 2;
    FOT_ASSERT(k.shape[0] == H && k.shape[2] == D && S <= k.shape[1]);
    FOT_ASSERT(k.dtype == v.dtype && k.shape == v.shape);
    FOT_ASSERT(rows_of(q) == T && row_width(q) >= H * D);
    FOT_ASSERT(rows_of(out) == T && row_width(out) >= H * D);
    // Decode-sized: the decode kernel starts from an empty state and writes out itself (one
    // launch). Prefill-sized in `fast` over bf16 stores with one key split: the tensor-core
    // kernel does the same (the partial is neither initialised, read nor written). Anything
    // else: the three ops.
    const bool tc =
        precision_ == Precision::kFast && T > kc::kAttnDecodeMaxT && S >= 1 &&
        kc::attn_accumulate_tc_supported(k.data, v.data, k.dtype, k.shape[1] * D, D, scale);
    const int64_t splits = kc::attn_accumulate_splits(H, T, S, D, causal_offset, sm_count_,
                                                      tc ? 64 * kc::attn_tc_m_tiles(T, D) : 64);
    const auto profile = [&] {
        return ProfileScope(
            profiler_.get(), causal_offset < S ? Phase::kLocalAttention : Phase::kMemoryAttention,
            profiler_ ? 4.0 * static_cast<double>(H * D) * visible_pairs(T, S, causal_offset) : 0.0,
            2.0 * static_cast<double>(H * S * D) * dtype_size(k.dtype), "attn_one_store");
    };
    if (tc && splits == 1) {
        auto prof = profile();
        kc::attn_one_store_tc(out.data, out.dtype, row_width(out), q.as<float>(), row_width(q),
                              k.data, v.data, k.shape[1] * D, H, T, S, D, scale, causal_offset,
                              stream_);
        return;
    }
    if (!kc::attn_one_store_supported(out.dtype, k.data, v.data, k.dtype, k.shape[1] * D, H, T, S,
                                      D, causal_offset, splits)) {
        Backend::attn_one_store(out, part, q, k, v, S, scale, causal_offset);
        return;
    }
    auto prof = profile();
    float* sc = nullptr;
    if (splits > 1) {
        sc = static_cast<float*>(
            scratch(*attn_scratch_, sizeof(float) * static_cast<size_t>(splits * H * T * (D + 2))));
    }
    kc::attn_one_store(out.data, out.dtype, row_width(out), part.as<float>(), q.as<float>(),
                       row_width(q), k.data, v.data, k.dtype, k.shape[1] * D, H, T, S, D, scale,
                       causal_offset, precision_ == Precision::kFast, splits, sc,
                       splits > 1 ? split_tickets(H) : nullptr, stream_);
}

void CudaBackend::scatter_heads(TensorView store, int64_t at, TensorView x) {
    ProfileScope prof(profiler_.get(), Phase::kOther, 0, 2.0 * static_cast<double>(x.nbytes()));
    check_device(store, "key/value store");
    check_f32(x, "key/value rows");
    FOT_ASSERT(store.shape.size() == 3);
    const int64_t H = store.shape[0], D = store.shape[2], T = rows_of(x);
    FOT_ASSERT(at >= 0 && at + T <= store.shape[1] && row_width(x) >= H * D);
    kc::scatter_heads(store.data, store.dtype, store.shape[1] * D, at, x.as<float>(), row_width(x),
                      T, H, D, stream_);
}

void CudaBackend::rope_store_kv(TensorView q, TensorView k, TensorView v, TensorView k_store,
                                TensorView v_store, int64_t at, float theta, bool rotate) {
    FOT_ASSERT(k_store.shape.size() == 3 && v_store.shape.size() == 3);
    const int64_t H = k_store.shape[0], cap = k_store.shape[1], D = k_store.shape[2];
    // One launch needs one store layout and even head_dim; anything else takes the four ops.
    if (v_store.shape != k_store.shape || v_store.dtype != k_store.dtype || D % 2 != 0) {
        Backend::rope_store_kv(q, k, v, k_store, v_store, at, theta, rotate);
        return;
    }
    ProfileScope prof(profiler_.get(), Phase::kOther, 0,
                      static_cast<double>(2 * q.nbytes() + 2 * k.nbytes() + 2 * v.nbytes()));
    check_f32(q, "rope_store_kv q");
    check_f32(k, "rope_store_kv k");
    check_f32(v, "rope_store_kv v");
    check_device(k_store, "key store");
    check_device(v_store, "value store");
    const int64_t T = rows_of(k);
    FOT_ASSERT(rows_of(q) == T && rows_of(v) == T && at >= 0 && at + T <= cap);
    FOT_ASSERT(row_width(q) >= H * D && row_width(k) >= H * D && row_width(v) >= H * D);
    kc::rope_store_kv(q.as<float>(), row_width(q), k.as<float>(), row_width(k), v.as<float>(),
                      row_width(v), k_store.data, v_store.data, k_store.dtype, cap * D, at, T, H, D,
                      theta, rotate, stream_);
}

// ---- top-k -------------------------------------------------------------------------------------

namespace {
// FOT_CUDA_TOPK=auto|rows|filtered|rows-one-block picks memory_topk's path
// (kernels/cuda/ops.h), for benchmark comparisons; all give the same bits. Unset: auto.
kc::TopkPath topk_path_from_env() {
    const char* e = std::getenv("FOT_CUDA_TOPK");
    const std::string v = e ? e : "";
    if (v.empty() || v == "auto") return kc::TopkPath::kAuto;
    if (v == "rows") return kc::TopkPath::kScoreRows;
    if (v == "rows-one-block") return kc::TopkPath::kScoreRowsOneBlock;
    if (v == "filtered") return kc::TopkPath::kFiltered;
    FOT_THROW("FOT_CUDA_TOPK='", v,
              "' is not a top-k path (auto, rows, filtered or rows-one-block)");
}
}  // namespace

void CudaBackend::memory_topk(TensorView scores, TensorView rows, TensorView positions,
                              TensorView q, TensorView k, TensorView row_pos, int64_t S,
                              float scale) {
    // Keys read once per (head, row): S rows of D elements per head. An empty shard may pass
    // an empty view (no shape).
    const double key_bytes =
        k.shape.size() == 3 ? static_cast<double>(S) * k.shape[0] * k.shape[2] * dtype_size(k.dtype)
                            : 0.0;
    ProfileScope prof(profiler_.get(), Phase::kTopk,
                      2.0 * static_cast<double>(q.numel()) * static_cast<double>(S), key_bytes);
    check_f32(scores, "top-k scores");
    check_f32(q, "top-k queries");
    check_device(rows, "top-k rows");
    check_device(positions, "top-k positions");
    FOT_ASSERT(rows.dtype == DType::kI64 && positions.dtype == DType::kI64);
    FOT_ASSERT(scores.shape.size() == 3);
    const int64_t H = scores.shape[0], T = scores.shape[1], K = scores.shape[2];
    FOT_ASSERT(rows.numel() == scores.numel() && positions.numel() == scores.numel());
    FOT_ASSERT(rows_of(q) == T);
    if (S == 0) {
        // An empty memory shard (its arena may never have been allocated): all slots absent.
        kc::memory_topk(scores.as<float>(), rows.as<int64_t>(), positions.as<int64_t>(),
                        q.as<float>(), row_width(q), nullptr, DType::kF32, 0, nullptr, H, T, 0, 0,
                        K, scale, nullptr, 0, stream_);
        return;
    }
    check_device(k, "top-k keys");
    check_device(row_pos, "top-k row positions");
    FOT_ASSERT(row_pos.dtype == DType::kI64 && row_pos.numel() >= S);
    FOT_ASSERT(k.shape.size() == 3);
    const int64_t D = k.shape[2];
    FOT_ASSERT(k.shape[0] == H && S <= k.shape[1] && row_width(q) >= H * D);
    const size_t row = static_cast<size_t>(kc::memory_topk_row_scratch(S, K));
    const size_t want =
        std::max(row, std::min(static_cast<size_t>(H * T) * row, kTopkScratchFloats));
    float* sc = static_cast<float*>(scratch(*topk_scratch_, want * sizeof(float)));
    const int64_t avail = static_cast<int64_t>(topk_scratch_->bytes / sizeof(float));
    static const kc::TopkPath path = topk_path_from_env();
    // FOT_CUDA_TOPK_TC=0: prefill scores of bf16 keys on the fp32 tile kernel instead of the
    // tensor cores (benchmark comparisons; scores differ by fp32 rounding).
    static const bool tc_scores = [] {
        const char* e = std::getenv("FOT_CUDA_TOPK_TC");
        return !(e && std::string(e) == "0");
    }();
    // A forced filtered path falls back to score rows where it does not apply (K > 1024 or
    // fewer than 4K sampled keys).
    const kc::TopkPath use =
        path == kc::TopkPath::kFiltered && !kc::memory_topk_filtered_supported(S, D, K)
            ? kc::TopkPath::kScoreRows
            : path;
    kc::memory_topk(scores.as<float>(), rows.as<int64_t>(), positions.as<int64_t>(), q.as<float>(),
                    row_width(q), k.data, k.dtype, k.shape[1] * D, row_pos.as<int64_t>(), H, T, S,
                    D, K, scale, sc, avail, stream_, use, nullptr, tc_scores);
}

void CudaBackend::topk_threshold(TensorView thr_score, TensorView thr_pos, TensorView scores,
                                 TensorView positions) {
    ProfileScope prof(profiler_.get(), Phase::kTopk);
    check_f32(thr_score, "top-k threshold");
    check_device(thr_pos, "top-k threshold positions");
    check_f32(scores, "top-k candidate scores");
    check_device(positions, "top-k candidate positions");
    FOT_ASSERT(scores.shape.size() == 4 && positions.shape == scores.shape);
    FOT_ASSERT(thr_pos.dtype == DType::kI64 && positions.dtype == DType::kI64);
    const int64_t R = scores.shape[0], H = scores.shape[1], T = scores.shape[2],
                  K = scores.shape[3];
    FOT_ASSERT(thr_score.numel() == H * T && thr_pos.numel() == H * T);
    kc::topk_threshold(thr_score.as<float>(), thr_pos.as<int64_t>(), scores.as<float>(),
                       positions.as<int64_t>(), R, H, T, K, stream_);
}

void CudaBackend::attn_accumulate_selected(TensorView part, TensorView v, TensorView scores,
                                           TensorView rows, TensorView positions,
                                           TensorView thr_score, TensorView thr_pos) {
    ProfileScope prof(profiler_.get(), Phase::kTopk);
    check_f32(part, "attention partial");
    check_f32(scores, "top-k scores");
    check_device(rows, "top-k rows");
    check_device(positions, "top-k positions");
    check_f32(thr_score, "top-k threshold");
    check_device(thr_pos, "top-k threshold positions");
    FOT_ASSERT(part.shape.size() == 3 && scores.shape.size() == 3);
    const int64_t H = part.shape[0], T = part.shape[1], D = part.shape[2] - 2;
    const int64_t K = scores.shape[2];
    FOT_ASSERT(scores.shape[0] == H && scores.shape[1] == T);
    // An empty shard's value arena may be unallocated; its candidates are all absent (rows
    // -1), so the kernel never reads it.
    int64_t v_head_stride = 0;
    if (v.data != nullptr) {
        check_device(v, "attention values");
        FOT_ASSERT(v.shape.size() == 3 && v.shape[2] == D);
        v_head_stride = v.shape[1] * D;
    }
    kc::attn_accumulate_selected(part.as<float>(), v.data, v.dtype, v_head_stride,
                                 scores.as<float>(), rows.as<int64_t>(), positions.as<int64_t>(),
                                 thr_score.as<float>(), thr_pos.as<int64_t>(), H, T, D, K, stream_);
}

void CudaBackend::synchronize() {
    FOT_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
}

// ---- step graphs -------------------------------------------------------------------------------

bool CudaBackend::graph_begin(int64_t rows) {
    Graphs& g = *graphs_;
    FOT_ASSERT(!g.capturing);
    if (!g.enabled || profiler_ || rows < 1 || rows > kc::kGemvMaxT) return false;
    // Relaxed: the ops may still call what is harmless during a capture (a side-stream
    // allocation, cudaFuncSetAttribute).
    const cudaError_t rc =
        cudaStreamBeginCapture(static_cast<cudaStream_t>(stream_), cudaStreamCaptureModeRelaxed);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        g.disable("cudaStreamBeginCapture", rc);
        return false;
    }
    g.capturing = true;
    g.rows = rows;
    stats_->capturing = true;
    return true;
}

bool CudaBackend::graph_end(int64_t piece) {
    Graphs& g = *graphs_;
    FOT_ASSERT(g.capturing);
    auto st = static_cast<cudaStream_t>(stream_);
    cudaGraph_t graph = nullptr;
    cudaError_t rc = cudaStreamEndCapture(st, &graph);
    g.capturing = false;
    stats_->capturing = false;
    const char* what = "cudaStreamEndCapture";
    if (rc == cudaSuccess) {
        const std::pair<int64_t, int64_t> key{piece, g.rows};
        cudaGraphExec_t& exec = g.exec[key];
        if (exec) {
            cudaGraphExecUpdateResultInfo info = {};
            if (cudaGraphExecUpdate(exec, graph, &info) == cudaSuccess) {
                g.refused[key] = 0;
            } else {
                // Another shape of step (a flush, another kernel instance): a new graph.
                (void)cudaGetLastError();
                cudaGraphExecDestroy(exec);
                exec = nullptr;
                ++g.refused[key];
            }
        }
        if (!exec) {
            what = "cudaGraphInstantiate";
            rc = cudaGraphInstantiate(&exec, graph, 0);
            if (rc == cudaSuccess)
                ++g.instantiations;
            else
                exec = nullptr;
        }
        if (rc == cudaSuccess) {
            what = "cudaGraphLaunch";
            rc = cudaGraphLaunch(exec, st);
        }
        if (rc == cudaSuccess) ++g.launches;
        // A piece whose graph changes at every step gains nothing from graphs and pays an
        // instantiation per step.
        if (rc == cudaSuccess && g.refused[key] >= 8) {
            g.disable("updating a graph in place (8 steps in a row)",
                      cudaErrorGraphExecUpdateFailure);
        }
    }
    if (graph) cudaGraphDestroy(graph);
    release_held_frees();
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        g.disable(what, rc);
        return false;
    }
    return true;
}

void CudaBackend::graph_abort() {
    Graphs& g = *graphs_;
    if (!g.capturing) return;
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(static_cast<cudaStream_t>(stream_), &graph);
    (void)cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    g.capturing = false;
    stats_->capturing = false;
    release_held_frees();
}

int64_t CudaBackend::graph_launches() const {
    return graphs_->launches;
}
int64_t CudaBackend::graph_instantiations() const {
    return graphs_->instantiations;
}
void CudaBackend::set_graphs(bool on) {
    FOT_ASSERT(!graphs_->capturing);
    graphs_->enabled = on;
}

// ---- extras ------------------------------------------------------------------------------------

void CudaBackend::row_max_sumexp(TensorView max_out, TensorView sum_out, TensorView logits) {
    check_f32(max_out, "row max output");
    check_f32(sum_out, "row sum-exp output");
    check_f32(logits, "logits");
    const int64_t T = rows_of(logits), V = row_width(logits);
    FOT_ASSERT(max_out.numel() == T && sum_out.numel() == T);
    kc::row_max_sumexp(logits.as<float>(), T, V, max_out.as<float>(), sum_out.as<float>(), stream_);
}

void CudaBackend::fill_uniform(TensorView dst, uint64_t seed, float scale) {
    check_device(dst, "fill destination");
    kc::fill_uniform(dst.data, dst.dtype, dst.numel(), seed, scale, stream_);
}

void CudaBackend::set_profiling(bool on) {
    if (on && !profiler_) profiler_ = std::make_unique<PhaseProfiler>(stream_);
    if (!on) profiler_.reset();
}

std::vector<OpStat> CudaBackend::op_stats() const {
    return profiler_ ? profiler_->ops() : std::vector<OpStat>{};
}

PhaseStats CudaBackend::take_phase_stats() {
    return profiler_ ? profiler_->take() : PhaseStats{};
}

}  // namespace fot
