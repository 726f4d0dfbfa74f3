// CUDA emulator for development on machines without a GPU (kernels/cuda/emu/README.md).
//
// Stands in for <cuda_runtime.h> when the .cu files are compiled as plain C++ (after
// preprocess.py has rewritten kernel launches and shared memory). Each block runs its
// threads as fibers on one OS thread, in a seeded random order between barriers (blocks run
// one after another, in a random order too); __syncthreads, __syncwarp and the warp
// collectives are real barriers (a barrier that can never complete aborts with a message,
// so divergent barriers are caught); __shared__ variables are function statics, poisoned
// (0xff bytes) at the start of every block, like dynamic shared memory. Device memory is
// host memory. Deterministic for a seed; slow; for correctness only. Never part of the
// library.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __constant__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
// Aligned as vector_types.h declares them: a vector load or store through a misaligned
// pointer faults on a GPU ("misaligned address"), and the memcheck build's alignment check
// reports it here.
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
inline float4 make_float4(float x, float y, float z, float w) {
    return {x, y, z, w};
}
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
    return {x, y, z, w};
}

// The running fiber's coordinates (set by the scheduler before each switch).
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

// ---- runtime types ---------------------------------------------------------------------------
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorNoDevice = 100,
    cudaErrorNotReady = 600,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorCapturedEvent = 907,
    cudaErrorGraphExecUpdateFailure = 910
};
using cudaStream_t = struct EmuStream*;
using cudaEvent_t = struct EmuEvent*;
using cudaMemPool_t = struct EmuMemPool*;
using cudaGraph_t = struct EmuGraph*;
using cudaGraphExec_t = struct EmuGraphExec*;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2
};
enum cudaGraphExecUpdateResult {
    cudaGraphExecUpdateSuccess = 0,
    cudaGraphExecUpdateError = 1,
    cudaGraphExecUpdateErrorTopologyChanged = 2,
    cudaGraphExecUpdateErrorNodeTypeChanged = 3,
    cudaGraphExecUpdateErrorFunctionChanged = 4
};
struct cudaGraphExecUpdateResultInfo {
    cudaGraphExecUpdateResult result;
    void* errorNode;
    void* errorFromNode;
};
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
enum cudaMemcpyKind {
    cudaMemcpyHostToHost,
    cudaMemcpyHostToDevice,
    cudaMemcpyDeviceToHost,
    cudaMemcpyDeviceToDevice,
    cudaMemcpyDefault
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrClockRate = 13,
    cudaDevAttrMemoryClockRate = 36,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76
};
constexpr unsigned cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2, cudaHostAllocDefault = 0;

const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int device);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
// Stream-ordered allocation: immediate on the CPU (the emulator runs work at enqueue time).
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t st);
cudaError_t cudaFreeAsync(void* p, cudaStream_t st);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b);
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t st);
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t st);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
// CUDA graphs through stream capture. While a stream captures, what is enqueued on it (kernels,
// cuBLAS calls, cudaMemcpyAsync, cudaMemsetAsync) is recorded, not run; synchronising it (or
// the device) invalidates the capture, as on a GPU; stream-ordered allocation on it aborts
// (the backend's buffers must never be graph allocations). A graph runs its records in order
// and counts as one launch in emu::launches(). cudaGraphExecUpdate succeeds when the records
// match one for one in kind and kernel (the strictest rule a device applies), and then takes
// the new records' parameters.
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t e, cudaGraph_t g,
                                cudaGraphExecUpdateResultInfo* info);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);

namespace emu {
// Dynamic shared memory of the running block (what `extern __shared__ T x[]` becomes).
void* dynamic_smem_raw();
template <typename T>
T* dynamic_smem() {
    return static_cast<T*>(dynamic_smem_raw());
}
void set_max_dynamic_smem(const void* kernel, int bytes);
// Kernel launches and cuBLAS calls so far (what a device would count as launches).
uint64_t launches();
// cuBLAS GEMM calls so far (cublasGemmEx and cublasGemmStridedBatchedEx: one each).
uint64_t gemm_calls();
// Runs `body` as grid x block fibers; checks the launch configuration first.
// Whether `s` is capturing a graph; record() appends to its capture what would run now: a
// kernel launch (kernel = its function), or a copy, fill or cuBLAS call (kernel = null).
bool capturing(cudaStream_t s);
void record(cudaStream_t s, const void* kernel, std::function<void()> run);
// Graphs instantiated so far (cudaGraphInstantiate calls): tests check that decode steps
// update their graphs in place instead of instantiating new ones.
uint64_t graph_instantiations();
// Fault injection: after `after` more captures end normally, the next n end invalidated
// (cudaStreamEndCapture fails), as when an op synchronised a capturing stream on a device.
void fail_captures(int after, int n);
// pdl: a programmatic dependent launch (kernels/cuda/pdl.cuh): every thread must call
// pdl_wait() (pdl_start), else the launch aborts.
void run_grid(const void* kernel, dim3 grid, dim3 block, size_t smem, void (*body)(void*),
              void* ctx, bool pdl = false);
// griddepcontrol.wait of the running thread (kernels run one at a time here, so it only counts).
void pdl_wait();
// Aborts with a message (an emulated kernel broke a rule of the hardware).
[[noreturn]] void fail(const char* what);
// Barriers and warp collectives (participants: the lanes of `mask`). `file`/`line` name the
// __syncthreads call site, for fault injection (skip_barrier).
void sync_block(const char* file, int line);
// __threadfence (blocks run one at a time here: every write of a finished block is visible
// already); the racecheck's device-memory check counts it, and skip_barrier can delete it.
void thread_fence(const char* file, int line);
void sync_warp(unsigned mask);
uint64_t warp_exchange(unsigned mask, uint64_t mine, int src_lane);
unsigned warp_ballot(unsigned mask, bool pred);
unsigned warp_match_any(unsigned mask, uint64_t value);
// All 32 lanes of the calling warp: lane l's `bytes` bytes land at all + l * bytes.
void warp_all_gather(const void* mine, size_t bytes, void* all);
// Warpgroup asynchronous operations (wgmma.mma_async), one warp's part at a time: the 32 lanes
// of the calling warp (a warp collective; the block must be whole warpgroups of 128) pass their
// `bytes` bytes of operands; `run` gets all 32 (lane l's at all + l * bytes) and runs once for
// the warp, either at once or at the first warpgroup_wait of one of its lanes that covers the
// issue (at random), so it may read shared memory at either moment, as the hardware may.
// Groups as for cp.async.
void warpgroup_issue(const void* mine, size_t bytes,
                     const std::function<void(const unsigned char* all)>& run);
void warpgroup_commit();
// `file` / `line`: the call site, for fault injection (skip_barrier covers waits too).
void warpgroup_wait(int pending, const char* file, int line);
// Whether an operation this thread issued has not run yet.
bool warpgroup_pending();
// cp.async: copy `bytes` from src (zeros when src is null) to dst, completing at a random
// moment no later than the cp_async_wait that covers its group.
void cp_async(void* dst, const void* src, int bytes);
void cp_async_commit();
void cp_async_wait(int pending);
// Static __shared__ arrays start each block as 0xff bytes (preprocess.py inserts the call).
void poison_static(void* p, size_t bytes);

// ---- test controls ----
// Seed of the schedule: the order of blocks, of threads between barriers, and of cp.async
// completions. Default 1, or $FOT_EMU_SEED.
void set_seed(uint64_t seed);
// Fault injection: __syncthreads calls (and wgmma waits, and __threadfence) at `line` of a file
// whose path ends with `file_suffix` return without waiting (as if the barrier were deleted).
// line 0 = none.
void skip_barrier(const char* file_suffix, int line);

inline dim3 as_dim3(dim3 d) {
    return d;
}
inline dim3 as_dim3(unsigned v) {
    return dim3(v);
}
inline dim3 as_dim3(int v) {
    return dim3(static_cast<unsigned>(v));
}
inline dim3 as_dim3(int64_t v) {
    return dim3(static_cast<unsigned>(v));
}

// `kernel<<<grid, block, smem, stream>>>(args...)` becomes
// `::emu::Launch(grid, block, smem, stream)(kernel, args...)`.
struct Launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    bool pdl;
    template <typename G, typename B>
    Launch(G g, B b, size_t s = 0, cudaStream_t st = nullptr, bool programmatic = false)
        : grid(as_dim3(g)), block(as_dim3(b)), smem(s), stream(st), pdl(programmatic) {}
    template <typename... P, typename... A>
    void operator()(void (*kernel)(P...), A&&... args) const {
        if (stream && capturing(stream)) {
            // A graph keeps the parameters the launch had when it was captured.
            auto params = std::make_shared<const std::tuple<P...>>(std::forward<A>(args)...);
            const Launch self = *this;
            record(stream, reinterpret_cast<const void*>(kernel),
                   [self, kernel, params] { self.run(kernel, *params); });
            return;
        }
        const std::tuple<P...> params(std::forward<A>(args)...);
        run(kernel, params);
    }
    template <typename... P>
    void run(void (*kernel)(P...), const std::tuple<P...>& params) const {
        std::tuple<P...> copy = params;
        struct Ctx {
            void (*k)(P...);
            std::tuple<P...>* p;
        } ctx{kernel, &copy};
        run_grid(
            reinterpret_cast<const void*>(kernel), grid, block, smem,
            [](void* c) {
                auto* x = static_cast<Ctx*>(c);
                std::apply(x->k, *x->p);
            },
            &ctx, pdl);
    }
};
}  // namespace emu

template <typename K>
cudaError_t cudaFuncSetAttribute(K* kernel, cudaFuncAttribute, int value) {
    emu::set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), value);
    return cudaSuccess;
}

// ---- device intrinsics -------------------------------------------------------------------------
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    emu::sync_block(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    emu::sync_warp(mask);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8, "shuffle of a large type");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    const int lane = static_cast<int>(threadIdx.x & 31u);
    const uint64_t got = emu::warp_exchange(mask, bits, lane ^ lane_mask);
    T r;
    std::memcpy(&r, &got, sizeof(T));
    return r;
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane) {
    static_assert(sizeof(T) <= 8, "shuffle of a large type");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    const uint64_t got = emu::warp_exchange(mask, bits, src_lane & 31);
    T r;
    std::memcpy(&r, &got, sizeof(T));
    return r;
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    return emu::warp_ballot(mask, pred != 0);
}
template <typename T>
unsigned __match_any_sync(unsigned mask, T v) {
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    return emu::warp_match_any(mask, bits);
}
inline int __ffs(unsigned x) {
    return __builtin_ffs(static_cast<int>(x));
}
inline int __popc(unsigned x) {
    return __builtin_popcount(x);
}
// The racecheck build (-fsanitize=thread instrumentation, racecheck.h) must not see atomics as
// plain reads and writes: concurrent atomics on one address are no hazard.
// Atomics and fences are reported to it: they order device memory between blocks (racecheck.h).
#if defined(__SANITIZE_THREAD__)
#define FOT_EMU_ATOMIC __attribute__((no_sanitize_thread, noinline))
namespace emu::race {
void atomic_done();
}  // namespace emu::race
#define FOT_EMU_RACE(call) ::emu::race::call()
#else
#define FOT_EMU_ATOMIC inline
#define FOT_EMU_RACE(call) (void)0
#endif
template <typename T>
FOT_EMU_ATOMIC T atomicAdd(T* p, T v) {
    const T old = *p;  // one OS thread runs the whole block: plain read-modify-write
    *p = old + v;
    FOT_EMU_RACE(atomic_done);
    return old;
}
template <typename T>
T __ldg(const T* p) {
    return *p;
}
template <typename T>
T __ldcg(const T* p) {
    return *p;
}
// Blocks run one at a time here: every write of a finished block is already visible.
inline void __threadfence(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    emu::thread_fence(file, line);
}
// Round-to-nearest arithmetic that the compiler never contracts into an FMA (the emulated
// builds have -ffp-contract=off; volatile keeps it so at any flag).
inline float __fmul_rn(float a, float b) {
    volatile float r = a * b;
    return r;
}
inline float __fadd_rn(float a, float b) {
    volatile float r = a + b;
    return r;
}
inline float __fsub_rn(float a, float b) {
    volatile float r = a - b;
    return r;
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int min(int a, int b) {
    return a < b ? a : b;
}
inline int max(int a, int b) {
    return a > b ? a : b;
}
