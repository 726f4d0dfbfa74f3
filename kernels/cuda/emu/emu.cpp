// CUDA emulator: the block scheduler (fibers: fiber.h), barriers, warp collectives, host
// stand-ins for the runtime and cuBLAS calls. See cuda_runtime.h.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"
#include "fiber.h"
#include "racecheck.h"

#if defined(FOT_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#endif

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
namespace {

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "cuda emulator: %s\n", msg.c_str());
    std::fflush(stderr);
    std::abort();
}

struct Barrier {
    int count = 0;
    uint64_t gen = 0;
    std::vector<unsigned> waiters;  // threads blocked in this generation
};

// One cp.async copy; src null = zero fill. It may be done at its issue (`done`); the racecheck
// still counts it as in flight until the wait that covers it.
struct Copy {
    void* dst;
    const void* src;
    int bytes;
    bool done = false;
    uint32_t issued_in = 0;  // the racecheck's barrier generation at the issue
};

// One warp's part of an asynchronous warpgroup operation (wgmma.mma_async: each warp's rows
// of D depend on its own rows of A and all of B): made when the warp's 32 lanes have issued
// it, run once, then or at the first wgmma.wait_group of one of its lanes that covers it.
struct AsyncOp {
    bool done = false;
    std::function<void()> run;
};
using AsyncOpPtr = std::shared_ptr<AsyncOp>;

struct Fiber {
    FiberContext ctx;
    unsigned tid = 0;
    bool done = false;
    Barrier* waiting = nullptr;
    uint64_t wait_gen = 0;
    std::vector<Copy> open;                          // cp.async copies not yet committed
    std::vector<std::vector<Copy>> groups;           // committed groups, oldest first
    std::vector<AsyncOpPtr> wg_open;                 // wgmma ops not yet committed
    std::vector<std::vector<AsyncOpPtr>> wg_groups;  // committed wgmma groups, oldest first
};

// One barrier and exchange area per (warp, lane mask): lanes of a subset (e.g. a
// __match_any_sync under a branch) and the rest of the warp (already in the next
// full-warp collective) must not share a count.
struct WarpGroup {
    Barrier bar;
    uint64_t slot[32];
    std::vector<unsigned char> bytes;  // warp_all_gather
    AsyncOpPtr op;                     // warpgroup_issue: the op made in barrier generation op_gen
    uint64_t op_gen = ~uint64_t{0};
};
struct Warp {
    std::map<unsigned, WarpGroup> groups;
};
// The block's runnable threads (not exited, not blocked at a barrier), one bit each: a pick is
// a find-next-bit, not a walk over the fibers with a division per step (with 1023 of 1024
// threads at a barrier, each pick walked them all: a third of the emulated tests' time). The
// picks are the walk's, bit for bit: same seed, same schedule.
class ReadySet {
  public:
    void reset(unsigned n) {
        words_.assign((n + 63) / 64, 0);
        for (unsigned i = 0; i < n; ++i) set(i);
    }
    void set(unsigned i) { words_[i / 64] |= uint64_t{1} << (i % 64); }
    void clear(unsigned i) { words_[i / 64] &= ~(uint64_t{1} << (i % 64)); }
    // Of the n bits from `lo` (a multiple of 32: one warp's lanes), the first set one at or
    // after lo + off, wrapping around within them; -1 when none is set.
    int next_in_warp(unsigned lo, unsigned n, unsigned off) const {
        uint64_t m = words_[lo / 64] >> (lo % 64);
        m &= n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
        if (const uint64_t hi = m >> off) return static_cast<int>(lo + off + __builtin_ctzll(hi));
        return m ? static_cast<int>(lo + __builtin_ctzll(m)) : -1;
    }
    // The first set bit at or after `start`, wrapping around; -1 when none is set.
    int next_from(unsigned start) const {
        const size_t nw = words_.size();
        size_t w = start / 64;
        uint64_t bits = words_[w] & (~uint64_t{0} << (start % 64));
        for (size_t k = 0; k <= nw; ++k) {
            if (bits)
                return static_cast<int>(w * 64 + static_cast<unsigned>(__builtin_ctzll(bits)));
            w = w + 1 == nw ? 0 : w + 1;
            bits = words_[w];
        }
        return -1;
    }

  private:
    std::vector<uint64_t> words_;
};

struct BlockRun {
    std::vector<Fiber> fibers;
    ReadySet ready;
    FiberContext sched;
    int cur = -1;
    int live = 0;
    Barrier block_bar;
    std::vector<Warp> warps;
    void (*body)(void*) = nullptr;
    void* ctx = nullptr;
};

#if defined(FOT_EMU_ASAN)
constexpr size_t kStackBytes = 1024 * 1024;  // AddressSanitizer's redzones grow every frame
#else
constexpr size_t kStackBytes = 256 * 1024;
#endif
BlockRun* g_run = nullptr;
std::vector<std::unique_ptr<char[]>> g_stacks;
// A launch's dynamic shared memory, exactly as large as asked (at least a byte): in the
// AddressSanitizer build a read or write past its end is reported, as compute-sanitizer's
// memcheck would on a device. 128-byte aligned, as the kernels' shared layouts assume.
struct FreeAligned {
    void operator()(void* p) const { std::free(p); }
};
std::unique_ptr<unsigned char, FreeAligned> g_smem;
size_t g_smem_bytes = 0;
std::map<const void*, int> g_max_smem;
uint64_t g_launches = 0;    // kernel launches and cuBLAS calls (emulated kernels run one at a time)
uint64_t g_gemm_calls = 0;  // of which cuBLAS GEMM calls
bool g_replaying = false;   // a graph's records run: the graph counted as one launch
constexpr int kDefaultSmem = 48 * 1024;
constexpr int kOptInSmem = 227 * 1024;

uint64_t initial_seed() {
    const char* e = std::getenv("FOT_EMU_SEED");
    return e && *e ? std::strtoull(e, nullptr, 10) : 1;
}
std::mt19937_64 g_rng(initial_seed());
uint64_t g_block_gen = 0;                    // counts blocks run, for poison_static
std::map<const void*, uint64_t> g_poisoned;  // static shared array -> block it was poisoned in
std::string g_skip_file;
int g_skip_line = 0;

// The memcheck build: a cp.async's source and destination must lie in memory the program owns
// (this file is not instrumented, so the copy is checked here, when it is issued).
void check_copy([[maybe_unused]] const Copy& c) {
#if defined(FOT_EMU_ASAN)
    const size_t n = static_cast<size_t>(c.bytes);
    if (c.src && __asan_region_is_poisoned(const_cast<void*>(c.src), n))
        die("memcheck: cp.async reads " + std::to_string(n) + " bytes outside their allocation");
    if (__asan_region_is_poisoned(c.dst, n))
        die("memcheck: cp.async writes " + std::to_string(n) + " bytes outside shared memory");
#endif
}

void perform(const Copy& c) {
    if (c.done) return;
    if (c.src) {
        std::memcpy(c.dst, c.src, static_cast<size_t>(c.bytes));
    } else {
        std::memset(c.dst, 0, static_cast<size_t>(c.bytes));
    }
}

// A copy's wait: done now if it was not at its issue.
void land(const Copy& c, unsigned tid) {
    perform(c);
    race::copy_landed(c.dst, static_cast<size_t>(c.bytes), tid, c.issued_in);
}

// A fiber's entry: the thread's kernel body, then back to the scheduler for good.
void fiber_main() {
    BlockRun* r = g_run;
    r->body(r->ctx);
    Fiber& f = r->fibers[r->cur];
    for (auto& g : f.groups)
        for (auto& c : g) land(c, f.tid);
    for (auto& c : f.open) land(c, f.tid);
    f.groups.clear();
    f.open.clear();
    f.wg_open.clear();  // never waited for: the registers they would write are gone
    f.wg_groups.clear();
    f.done = true;
    r->ready.clear(f.tid);
    --r->live;
    exit_to(f.ctx, r->sched);  // never resumed
}

Fiber& me() {
    return g_run->fibers[g_run->cur];
}

// A barrier's generation ends: its waiters may run again.
void release(Barrier& b) {
    b.count = 0;
    ++b.gen;
    for (unsigned t : b.waiters) g_run->ready.set(t);
    b.waiters.clear();
}

void arrive(Barrier& b, int participants) {
    const uint64_t gen = b.gen;
    if (++b.count >= participants) {
        release(b);
        if (&b == &g_run->block_bar) {
            race::block_synced();
        } else {
            race::warp_synced(me().tid / 32u);
        }
        return;
    }
    Fiber& f = me();
    f.waiting = &b;
    f.wait_gen = gen;
    b.waiters.push_back(f.tid);
    g_run->ready.clear(f.tid);
    switch_fiber(f.ctx, g_run->sched);
}

WarpGroup& my_warp(unsigned mask) {
    const unsigned tid = me().tid, lane = tid & 31u;
    if (!(mask & (1u << lane))) die("warp collective called by a lane outside its mask");
    return g_run->warps[tid / 32].groups[mask];
}

void run_block(unsigned nthreads) {
    BlockRun& r = *g_run;
    r.fibers.assign(nthreads, Fiber{});
    r.warps.assign((nthreads + 31) / 32, Warp{});
    r.block_bar = Barrier{};
    r.ready.reset(nthreads);
    while (g_stacks.size() < nthreads) g_stacks.emplace_back(new char[kStackBytes]);
    for (unsigned i = 0; i < nthreads; ++i) {
        Fiber& f = r.fibers[i];
        f.tid = i;
        make_fiber(f.ctx, g_stacks[i].get(), kStackBytes, fiber_main, &r.sched);
    }
    r.live = static_cast<int>(nthreads);
    // Each step runs one runnable thread, picked at random, until it blocks: a warp can run
    // far ahead of the others up to the next __syncthreads, so code that lacks a barrier sees
    // another thread's writes too early or too late. Uniform picks rarely let a warp get far
    // (a warp collective waits for all 32 lanes while the other warps' lanes also get picks),
    // so between two block barriers, chosen at random half of the time, one warp is favoured:
    // its lanes run first whenever one is runnable, as when a warp races ahead on hardware and
    // overwrites shared data that the others still read (a missing barrier at a loop's top).
    const unsigned nwarps = (nthreads + 31) / 32;
    auto pick_favoured = [&] { return (g_rng() & 1u) ? static_cast<int>(g_rng() % nwarps) : -1; };
    int favoured = pick_favoured();
    uint64_t bar_gen = r.block_bar.gen;
    while (r.live > 0) {
        if (r.block_bar.gen != bar_gen) {
            bar_gen = r.block_bar.gen;
            favoured = pick_favoured();
        }
        bool progressed = false;
        int first = -1;  // a runnable lane of the favoured warp
        if (favoured >= 0) {
            const unsigned lo = static_cast<unsigned>(favoured) * 32u;
            const unsigned n = std::min(32u, nthreads - lo),
                           off = static_cast<unsigned>(g_rng() % n);
            first = r.ready.next_in_warp(lo, n, off);
        }
        const unsigned start =
            first >= 0 ? static_cast<unsigned>(first) : static_cast<unsigned>(g_rng() % nthreads);
        // The first runnable thread from `start` on, wrapping around.
        const int next = r.ready.next_from(start);
        if (next >= 0) {
            const unsigned i = static_cast<unsigned>(next);
            Fiber& f = r.fibers[i];
            f.waiting = nullptr;
            r.cur = static_cast<int>(i);
            race::set_thread(i, g_stacks[i].get(), kStackBytes);
            threadIdx =
                dim3(i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y));
            switch_fiber(r.sched, f.ctx);
            progressed = true;
            // A thread that exits no longer counts for __syncthreads.
            if (f.done && r.block_bar.count > 0 && r.block_bar.count >= r.live) {
                release(r.block_bar);
                race::block_synced();
            }
        }
        if (!progressed) {
            int at_block = 0, at_warp = 0;
            for (auto& f : r.fibers) {
                if (f.done) continue;
                (f.waiting == &r.block_bar ? at_block : at_warp)++;
            }
            die("deadlock in block (" + std::to_string(blockIdx.x) + "," +
                std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) +
                "): " + std::to_string(at_block) + " thread(s) wait in __syncthreads, " +
                std::to_string(at_warp) + " in warp collectives, " +
                std::to_string(nthreads - r.live) + " exited (divergent barrier?)");
        }
    }
}

}  // namespace

void* dynamic_smem_raw() {
    return g_smem.get();
}

void set_max_dynamic_smem(const void* kernel, int bytes) {
    if (bytes > kOptInSmem)
        die("cudaFuncSetAttribute: " + std::to_string(bytes) +
            " bytes of dynamic shared memory exceed the 227 KiB of sm_90");
    g_max_smem[kernel] = bytes;
}

uint64_t launches() {
    return g_launches;
}
uint64_t gemm_calls() {
    return g_gemm_calls;
}

namespace {
uint64_t g_pdl_waits = 0;  // pdl_wait calls in the running launch
}  // namespace

void pdl_wait() {
    if (g_run) ++g_pdl_waits;
}

void run_grid(const void* kernel, dim3 grid, dim3 block, size_t smem, void (*body)(void*),
              void* ctx, bool pdl) {
    const unsigned nthreads = block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > 1024)
        die("launch with " + std::to_string(nthreads) + " threads per block");
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        die("bad grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) + "," +
            std::to_string(grid.z) + ")");
    }
    auto it = g_max_smem.find(kernel);
    const int limit = it == g_max_smem.end() ? kDefaultSmem : it->second;
    if (smem > static_cast<size_t>(limit)) {
        die("launch asks for " + std::to_string(smem) +
            " bytes of dynamic shared memory, the kernel's limit is " + std::to_string(limit));
    }
    if (g_run) die("nested kernel launch");
    if (!g_replaying) ++g_launches;
    g_pdl_waits = 0;
    BlockRun run;
    run.body = body;
    run.ctx = ctx;
    g_run = &run;
    gridDim = grid;
    blockDim = block;
    std::vector<dim3> blocks;
    for (unsigned z = 0; z < grid.z; ++z) {
        for (unsigned y = 0; y < grid.y; ++y) {
            for (unsigned x = 0; x < grid.x; ++x) blocks.emplace_back(x, y, z);
        }
    }
    std::shuffle(blocks.begin(), blocks.end(), g_rng);  // no kernel may rely on block order
    if (!g_smem || g_smem_bytes != std::max<size_t>(smem, 1)) {
        g_smem_bytes = std::max<size_t>(smem, 1);
        void* p = nullptr;
        if (posix_memalign(&p, 128, g_smem_bytes) != 0) die("out of host memory for shared memory");
        g_smem.reset(static_cast<unsigned char*>(p));
    }
    for (const dim3& b : blocks) {
        blockIdx = b;
        ++g_block_gen;
        // Uninitialised shared memory reads as NaN / 0xff..: catches reads before writes.
        std::memset(g_smem.get(), 0xff, g_smem_bytes);
        race::begin_block(g_smem.get(), smem, nthreads);
        run_block(nthreads);
    }
    race::end_launch();
    g_run = nullptr;
    const uint64_t threads = uint64_t{nthreads} * grid.x * grid.y * grid.z;
    if (pdl && g_pdl_waits != threads) {
        die("a programmatic dependent launch whose kernel did not call pdl_start() in every "
            "thread (" +
            std::to_string(g_pdl_waits) + " of " + std::to_string(threads) +
            "): it could touch memory before the previous kernel finished");
    }
}

void fail(const char* what) {
    die(what);
}

bool skipped(const char* file, int line) {
    if (line != g_skip_line || g_skip_file.empty() || file == nullptr) return false;
    const std::string f = file;
    return f.size() >= g_skip_file.size() &&
           f.compare(f.size() - g_skip_file.size(), g_skip_file.size(), g_skip_file) == 0;
}

void thread_fence(const char* file, int line) {
    if (!skipped(file, line)) race::fence();
}

void sync_block(const char* file, int line) {
    if (skipped(file, line)) return;  // injected fault: this barrier does not exist
    arrive(g_run->block_bar, g_run->live);
}

void warp_all_gather(const void* mine, size_t bytes, void* all) {
    WarpGroup& w = my_warp(0xffffffffu);
    const unsigned lane = me().tid & 31u;
    if (w.bytes.size() != 32 * bytes) w.bytes.assign(32 * bytes, 0);
    std::memcpy(w.bytes.data() + lane * bytes, mine, bytes);
    arrive(w.bar, 32);
    std::memcpy(all, w.bytes.data(), 32 * bytes);
    arrive(w.bar, 32);
}

bool warpgroup_pending() {
    const Fiber& f = me();
    for (const AsyncOpPtr& op : f.wg_open)
        if (!op->done) return true;
    for (const auto& g : f.wg_groups)
        for (const AsyncOpPtr& op : g)
            if (!op->done) return true;
    return false;
}

void warpgroup_issue(const void* mine, size_t bytes,
                     const std::function<void(const unsigned char* all)>& run) {
    if (blockDim.x * blockDim.y * blockDim.z % 128 != 0)
        die("a warpgroup instruction in a block of " +
            std::to_string(blockDim.x * blockDim.y * blockDim.z) +
            " threads (not whole warpgroups of 128)");
    WarpGroup& w = my_warp(0xffffffffu);
    const unsigned lane = me().tid & 31u;
    if (w.bytes.size() != 32 * bytes) w.bytes.assign(32 * bytes, 0);
    std::memcpy(w.bytes.data() + lane * bytes, mine, bytes);
    const uint64_t gen = w.bar.gen;
    arrive(w.bar, 32);  // .sync: the warp's lanes issue together
    // The first lane past the barrier makes the warp's operation from all lanes' operands; the
    // others take the same one (the second barrier keeps the next issue from replacing it
    // before all have). It runs now (reading shared memory now) or at the covering wait, at
    // random, both being what hardware may do; never before an earlier pending one.
    if (w.op_gen != gen + 1) {
        auto all = std::make_shared<std::vector<unsigned char>>(w.bytes);
        w.op = std::make_shared<AsyncOp>();
        w.op->run = [all, run] { run(all->data()); };
        w.op_gen = gen + 1;
        if (!warpgroup_pending() && (g_rng() & 1)) {
            w.op->done = true;
            w.op->run();
        }
    }
    me().wg_open.push_back(w.op);
    arrive(w.bar, 32);
}

void warpgroup_commit() {
    Fiber& f = me();
    f.wg_groups.push_back(std::move(f.wg_open));
    f.wg_open.clear();
}

void warpgroup_wait(int pending, const char* file, int line) {
    if (skipped(file, line)) return;  // injected fault: this wait does not exist
    Fiber& f = me();
    while (static_cast<int>(f.wg_groups.size()) > pending) {
        for (const AsyncOpPtr& op : f.wg_groups.front()) {
            if (!op->done) {
                op->done = true;
                op->run();
            }
        }
        f.wg_groups.erase(f.wg_groups.begin());
    }
}

void cp_async(void* dst, const void* src, int bytes) {
    Copy c{dst, src, bytes};
    check_copy(c);
    c.issued_in = race::copy_issued(dst, static_cast<size_t>(bytes), __builtin_return_address(0));
    // Completes now or at the covering wait, at random: both are what hardware may do.
    if (g_rng() & 1) {
        perform(c);
        c.done = true;
    }
    me().open.push_back(c);
}

void cp_async_commit() {
    Fiber& f = me();
    f.groups.push_back(std::move(f.open));
    f.open.clear();
}

void cp_async_wait(int pending) {
    Fiber& f = me();
    while (static_cast<int>(f.groups.size()) > pending) {
        for (const Copy& c : f.groups.front()) land(c, f.tid);
        f.groups.erase(f.groups.begin());
    }
}

void poison_static(void* p, size_t bytes) {
    uint64_t& gen = g_poisoned[p];
    if (gen == g_block_gen) return;  // another thread of this block got here first
    gen = g_block_gen;
    std::memset(p, 0xff, bytes);
    race::add_static(p, bytes);
}

void set_seed(uint64_t seed) {
    g_rng.seed(seed);
}

void skip_barrier(const char* file_suffix, int line) {
    g_skip_file = file_suffix ? file_suffix : "";
    g_skip_line = line;
}

void sync_warp(unsigned mask) {
    WarpGroup& w = my_warp(mask);
    arrive(w.bar, __builtin_popcount(mask));
}

uint64_t warp_exchange(unsigned mask, uint64_t mine, int src_lane) {
    WarpGroup& w = my_warp(mask);
    const unsigned lane = me().tid & 31u;
    if (!(mask & (1u << (src_lane & 31)))) die("shuffle reads a lane outside the mask");
    w.slot[lane] = mine;
    arrive(w.bar, __builtin_popcount(mask));
    const uint64_t v = w.slot[src_lane & 31];
    arrive(w.bar, __builtin_popcount(mask));
    return v;
}

unsigned warp_ballot(unsigned mask, bool pred) {
    WarpGroup& w = my_warp(mask);
    const unsigned lane = me().tid & 31u;
    w.slot[lane] = pred ? 1 : 0;
    arrive(w.bar, __builtin_popcount(mask));
    unsigned bits = 0;
    for (unsigned l = 0; l < 32; ++l) {
        if ((mask & (1u << l)) && w.slot[l]) bits |= 1u << l;
    }
    arrive(w.bar, __builtin_popcount(mask));
    return bits;
}

unsigned warp_match_any(unsigned mask, uint64_t value) {
    WarpGroup& w = my_warp(mask);
    const unsigned lane = me().tid & 31u;
    w.slot[lane] = value;
    arrive(w.bar, __builtin_popcount(mask));
    unsigned bits = 0;
    for (unsigned l = 0; l < 32; ++l) {
        if ((mask & (1u << l)) && w.slot[l] == value) bits |= 1u << l;
    }
    arrive(w.bar, __builtin_popcount(mask));
    return bits;
}

}  // namespace emu

// ---- runtime -----------------------------------------------------------------------------------
struct EmuGraph {
    struct Node {
        const void* kernel;  // null: a copy, fill or cuBLAS call
        std::function<void()> run;
    };
    std::vector<Node> nodes;
};
struct EmuGraphExec {
    std::vector<EmuGraph::Node> nodes;
};
struct EmuStream {
    EmuGraph* capture = nullptr;  // non-null while capturing
    bool invalidated = false;
};
struct EmuEvent {
    bool captured = false;  // last recorded while its stream captured
};
struct EmuCublas {
    cudaStream_t stream = nullptr;
};

namespace emu {
namespace {
std::vector<cudaStream_t> g_capturing;  // streams capturing now
uint64_t g_instantiations = 0;
int g_captures_before_failing = 0, g_failed_captures = 0;  // fail_captures
// A call that waits for a capturing stream: on a device it invalidates the capture.
cudaError_t invalidate(cudaStream_t s) {
    s->invalidated = true;
    return cudaErrorStreamCaptureUnsupported;
}
}  // namespace

bool capturing(cudaStream_t s) {
    return s != nullptr && s->capture != nullptr;
}
void record(cudaStream_t s, const void* kernel, std::function<void()> run) {
    s->capture->nodes.push_back({kernel, std::move(run)});
}
uint64_t graph_instantiations() {
    return g_instantiations;
}
void fail_captures(int after, int n) {
    g_captures_before_failing = after;
    g_failed_captures = n;
}
}  // namespace emu

const char* cudaGetErrorString(cudaError_t e) {
    return e == cudaSuccess ? "no error" : "emulated error";
}
cudaError_t cudaGetLastError() {
    return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int* n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
    return d == 0 ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaGetDevice(int* d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
    // An H100 (sm_90): 132 multiprocessors, compute capability 9.0.
    *v = a == cudaDevAttrMultiProcessorCount      ? 132
         : a == cudaDevAttrComputeCapabilityMajor ? 9
         : a == cudaDevAttrComputeCapabilityMinor ? 0
                                                  : 1;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
#if defined(FOT_EMU_ASAN)
    // Exactly `bytes` (at least one): AddressSanitizer reports any access past the end, as
    // compute-sanitizer's memcheck does on a device, where the allocation granularity hides it.
    *p = nullptr;
    if (posix_memalign(p, 256, std::max<size_t>(bytes, 1)) != 0) *p = nullptr;
#else
    *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
#endif
    if (!*p) return cudaErrorMemoryAllocation;
    std::memset(*p, 0xff, bytes);  // garbage, as cudaMalloc gives: NaN in f32, bf16 and f16
    emu::race::device_alloc(*p, bytes);
    return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
    emu::race::device_free(p);
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t st) {
    if (emu::capturing(st)) emu::die("cudaMallocAsync on a capturing stream (a graph allocation)");
    return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t st) {
    if (emu::capturing(st)) emu::die("cudaFreeAsync on a capturing stream (a graph free)");
    return cudaFree(p);
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
    static int the_pool;
    *pool = reinterpret_cast<cudaMemPool_t>(&the_pool);
    return device == 0 ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr, void* value) {
    return pool && value ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
    return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeHost(void* p) {
    return cudaFree(p);
}
cudaError_t cudaMemGetInfo(size_t* f, size_t* t) {
    *f = size_t{1} << 34;
    *t = size_t{1} << 35;
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
    std::memcpy(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t st) {
    const char* a = static_cast<const char*>(s);
    char* b = static_cast<char*>(d);
    if (b < a + n && a < b + n) emu::die("cudaMemcpyAsync between overlapping ranges");
    if (emu::capturing(st)) {
        emu::record(st, nullptr, [d, s, n] { std::memcpy(d, s, n); });
        return cudaSuccess;
    }
    std::memcpy(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t st) {
    if (emu::capturing(st)) {
        emu::record(st, nullptr, [d, v, n] { std::memset(d, v, n); });
        return cudaSuccess;
    }
    std::memset(d, v, n);
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) {
    *s = new EmuStream;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
    return cudaStreamCreate(s);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (emu::capturing(s)) emu::die("cudaStreamDestroy of a capturing stream");
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    return emu::capturing(s) ? emu::invalidate(s) : cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
    return emu::capturing(s) ? emu::invalidate(s) : cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
    for (cudaStream_t s : emu::g_capturing) emu::invalidate(s);
    return emu::g_capturing.empty() ? cudaSuccess : cudaErrorStreamCaptureUnsupported;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
    *e = new EmuEvent;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
    return cudaEventCreateWithFlags(e, 0);
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
    *ms = 0.f;  // no timing in the emulator
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    e->captured = emu::capturing(s);
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    return e->captured ? cudaErrorCapturedEvent : cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (s == nullptr || emu::capturing(s)) return cudaErrorStreamCaptureUnsupported;
    s->capture = new EmuGraph;
    s->invalidated = false;
    emu::g_capturing.push_back(s);
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
    if (!emu::capturing(s)) return cudaErrorInvalidValue;
    auto& c = emu::g_capturing;
    c.erase(std::find(c.begin(), c.end(), s));
    EmuGraph* graph = s->capture;
    s->capture = nullptr;
    if (emu::g_captures_before_failing > 0) {
        --emu::g_captures_before_failing;
    } else if (emu::g_failed_captures > 0) {
        --emu::g_failed_captures;
        s->invalidated = true;
    }
    if (s->invalidated) {
        delete graph;
        *g = nullptr;
        return cudaErrorStreamCaptureInvalidated;
    }
    *g = graph;
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
    *status = !emu::capturing(s) ? cudaStreamCaptureStatusNone
              : s->invalidated   ? cudaStreamCaptureStatusInvalidated
                                 : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
    if (g == nullptr) return cudaErrorInvalidValue;
    ++emu::g_instantiations;
    *e = new EmuGraphExec{g->nodes};
    return cudaSuccess;
}
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t e, cudaGraph_t g,
                                cudaGraphExecUpdateResultInfo* info) {
    cudaGraphExecUpdateResult r = cudaGraphExecUpdateSuccess;
    if (e->nodes.size() != g->nodes.size()) {
        r = cudaGraphExecUpdateErrorTopologyChanged;
    } else {
        for (size_t i = 0; i < g->nodes.size() && r == cudaGraphExecUpdateSuccess; ++i) {
            const void *a = e->nodes[i].kernel, *b = g->nodes[i].kernel;
            if ((a == nullptr) != (b == nullptr))
                r = cudaGraphExecUpdateErrorNodeTypeChanged;
            else if (a != b)
                r = cudaGraphExecUpdateErrorFunctionChanged;
        }
    }
    if (info) *info = {r, nullptr, nullptr};
    if (r != cudaGraphExecUpdateSuccess) return cudaErrorGraphExecUpdateFailure;
    e->nodes = g->nodes;
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    if (emu::capturing(s)) emu::die("cudaGraphLaunch into a capturing stream");
    ++emu::g_launches;
    emu::g_replaying = true;
    for (const EmuGraph::Node& n : e->nodes) n.run();
    emu::g_replaying = false;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}

// ---- cuBLAS ------------------------------------------------------------------------------------
cublasStatus_t cublasCreate(cublasHandle_t* h) {
    *h = new EmuCublas;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) {
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) {
    return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "success" : "not supported";
}

namespace {
float load(const void* p, cudaDataType_t t, size_t i) {
    switch (t) {
        case CUDA_R_32F:
            return static_cast<const float*>(p)[i];
        case CUDA_R_16BF:
            return fot::bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case CUDA_R_16F:
            return fot::f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    }
    return 0.f;
}
}  // namespace

namespace {
// The memcheck build (this file is not instrumented there: see kernels/cuda/emu/README.md):
// the first to last element that a column-major GEMM touches in each matrix must lie in
// memory the program owns (what compute-sanitizer would say of cuBLAS's reads and writes, up
// to the gaps of a leading dimension).
#if defined(FOT_EMU_ASAN)
void check_gemm_extents(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                        const void* A, cudaDataType_t at, int lda, const void* B, cudaDataType_t bt,
                        int ldb, const float* c, int ldc) {
    if (m <= 0 || n <= 0) return;
    auto check = [](const void* p, size_t last, size_t elem, const char* what) {
        const size_t bytes = (last + 1) * elem;
        if (__asan_region_is_poisoned(const_cast<void*>(p), bytes)) {
            emu::fail((std::string("memcheck: cuBLAS GEMM ") + what + " (" + std::to_string(bytes) +
                       " bytes from its pointer) runs outside its allocation")
                          .c_str());
        }
    };
    const size_t ea = at == CUDA_R_32F ? 4 : 2, eb = bt == CUDA_R_32F ? 4 : 2;
    if (k > 0) {
        const size_t M = m - 1, N = n - 1, K = k - 1;
        check(A, ta == CUBLAS_OP_T ? M * lda + K : K * lda + M, ea, "A");
        check(B, tb == CUBLAS_OP_T ? K * ldb + N : N * ldb + K, eb, "B");
    }
    check(c, static_cast<size_t>(n - 1) * ldc + (m - 1), 4, "C");
}
#else
template <typename... Args>
void check_gemm_extents(const Args&...) {}
#endif

// One column-major GEMM as cublasGemmEx defines it, with fp32 sums in k order.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void* A,
          cudaDataType_t at, int lda, const void* B, cudaDataType_t bt, int ldb, float be, float* c,
          int ldc) {
    check_gemm_extents(ta, tb, m, n, k, A, at, lda, B, bt, ldb, c, ldc);
    for (int j = 0; j < n; ++j) {
        for (int i = 0; i < m; ++i) {
            float acc = 0.f;
            for (int p = 0; p < k; ++p) {
                const size_t ai = ta == CUBLAS_OP_T ? static_cast<size_t>(i) * lda + p
                                                    : static_cast<size_t>(p) * lda + i;
                const size_t bi = tb == CUBLAS_OP_T ? static_cast<size_t>(p) * ldb + j
                                                    : static_cast<size_t>(j) * ldb + p;
                acc += load(A, at, ai) * load(B, bt, bi);
            }
            float& out = c[static_cast<size_t>(j) * ldc + i];
            out = al * acc + (be != 0.f ? be * out : 0.f);
        }
    }
}
}  // namespace

namespace {
// A cuBLAS call runs now, or is recorded when the handle's stream captures (alpha and beta
// are read at the call, as in host pointer mode).
cublasStatus_t blas_call(cublasHandle_t h, std::function<void()> run) {
    ++emu::g_gemm_calls;
    if (emu::capturing(h->stream)) {
        emu::record(h->stream, nullptr, std::move(run));
        return CUBLAS_STATUS_SUCCESS;
    }
    ++emu::g_launches;
    run();
    return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void* alpha, const void* A, cudaDataType_t at,
                            int lda, const void* B, cudaDataType_t bt, int ldb, const void* beta,
                            void* C, cudaDataType_t ct, int ldc, cublasComputeType_t,
                            cublasGemmAlgo_t) {
    if (ct != CUDA_R_32F || at != bt) return CUBLAS_STATUS_NOT_SUPPORTED;
    const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    return blas_call(h, [=] {
        gemm(ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, static_cast<float*>(C), ldc);
    });
}

cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const void* alpha, const void* A, cudaDataType_t at, int lda, long long strideA, const void* B,
    cudaDataType_t bt, int ldb, long long strideB, const void* beta, void* C, cudaDataType_t ct,
    int ldc, long long strideC, int batch, cublasComputeType_t, cublasGemmAlgo_t) {
    if (ct != CUDA_R_32F || at != bt || batch < 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    // The batch's outputs are written concurrently on a device: overlapping ones are a bug.
    if (batch > 1 && (strideC < 0 || strideC < static_cast<long long>(ldc) * n))
        emu::fail("cublasGemmStridedBatchedEx: the outputs of the batch overlap (strideC)");
    const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    return blas_call(h, [=] {
        const size_t ea = at == CUDA_R_32F ? 4 : 2, eb = bt == CUDA_R_32F ? 4 : 2;
        for (int i = 0; i < batch; ++i) {
            gemm(ta, tb, m, n, k, al,
                 static_cast<const char*>(A) + static_cast<size_t>(i * strideA) * ea, at, lda,
                 static_cast<const char*>(B) + static_cast<size_t>(i * strideB) * eb, bt, ldb, be,
                 static_cast<float*>(C) + i * strideC, ldc);
        }
    });
}
