// The emulator's shared-memory racecheck (see racecheck.h). Compiled only with
// FOT_EMU_RACECHECK, into the build whose kernels carry -fsanitize=thread instrumentation.
#include "racecheck.h"

#if defined(FOT_EMU_RACECHECK)

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_runtime.h"

namespace emu::race {
namespace {

constexpr uint16_t kNobody = 0xffff;

// One access: who, and in which block-barrier and warp-sync generation.
struct Access {
    uint32_t bar = 0;
    uint16_t wsync = 0;
    uint16_t tid = kNobody;
};
// One shared byte. `gen` is the block it was last touched in: a stale cell is empty, so no
// clearing between blocks.
struct Cell {
    uint32_t gen = 0;
    Access write, read, other_read;  // other_read: a second reader since the write, not `read`'s
};
struct Region {
    uintptr_t lo = 0;
    size_t bytes = 0;
    std::vector<Cell> cells;
    const char* what = "";
};

bool g_active = false;
uint32_t g_gen = 0;  // blocks begun
uint32_t g_bar = 0;  // __syncthreads completed in this block
unsigned g_tid = 0;
uintptr_t g_stack_lo = 0;  // the running thread's stack: its register arrays
size_t g_stack_bytes = 0;
unsigned g_nthreads = 0;
std::vector<uint16_t> g_wsync;  // per warp: warp syncs completed
Region g_dynamic;
std::vector<Region> g_statics;  // reused across blocks; `bytes` 0 = unused this block
size_t g_nstatics = 0;
uintptr_t g_static_lo = 0, g_static_hi = 0;

std::string where(const void* pc);

// ---- device memory, between the blocks of a launch ----
constexpr size_t kPageBytes = 4096;
constexpr uint32_t kMaxBlocks = 0xfffe;  // block ids + 1 fit 16 bits
// One device byte in launch `launch`: the block (id + 1; 0 = none) that last wrote it, and the
// last two blocks that read it since.
struct GCell {
    uint32_t launch = 0;
    uint16_t w = 0, r = 0, r2 = 0;
};
struct Page {
    GCell cells[kPageBytes];
};
std::map<uintptr_t, size_t> g_device;  // cudaMalloc'd: start -> bytes
uintptr_t g_dev_lo = 0, g_dev_hi = 0;  // the allocation found last
// The gap between allocations found last (host memory the kernels read: a launch's arguments
// and constants), so that not every such access is a map lookup.
uintptr_t g_gap_lo = 0, g_gap_hi = 0;
std::unordered_map<uintptr_t, std::unique_ptr<Page>> g_pages;
bool g_new_launch = true;
uint32_t g_launch = 0;             // launches begun
bool g_check_device = false;       // this launch has at most kMaxBlocks blocks
uint16_t g_block = 0;              // the running block's id + 1
std::vector<uint8_t> g_published;  // per block id + 1: fence, then atomic
bool g_fenced = false, g_atomic = false, g_acquired = false;  // the running block's

bool in_device(uintptr_t a) {
    if (a - g_dev_lo < g_dev_hi - g_dev_lo) return true;
    if (a - g_gap_lo < g_gap_hi - g_gap_lo) return false;
    auto it = g_device.upper_bound(a);
    const uintptr_t next = it == g_device.end() ? ~uintptr_t{0} : it->first;
    uintptr_t lo = 0;
    if (it != g_device.begin()) {
        --it;
        if (a - it->first < it->second) {
            g_dev_lo = it->first;
            g_dev_hi = it->first + it->second;
            return true;
        }
        lo = it->first + it->second;
    }
    g_gap_lo = lo;
    g_gap_hi = next;
    return false;
}

std::string block_name(uint16_t id) {
    const unsigned b = id - 1u, gx = gridDim.x, gy = gridDim.y;
    return "(" + std::to_string(b % gx) + "," + std::to_string(b / gx % gy) + "," +
           std::to_string(b / gx / gy) + ")";
}

[[noreturn]] void report_device(const char* kind, uintptr_t a, uint16_t other,
                                const char* other_did, const char* cur_does, const void* pc) {
    const std::string at = pc ? " at " + where(pc) : "";
    auto it = g_device.upper_bound(a);
    --it;
    std::fprintf(stderr,
                 "cuda emulator: racecheck: %s hazard on byte %zu of device memory (an allocation "
                 "of %zu bytes) in block %s: it %s%s; block %s %s it in the same launch, and no "
                 "__threadfence + atomic ticket orders the two blocks\n",
                 kind, static_cast<size_t>(a - it->first), it->second, block_name(g_block).c_str(),
                 cur_does, at.c_str(), block_name(other).c_str(), other_did);
    std::fflush(stderr);
    std::abort();
}

void check_device(uintptr_t a, size_t n, bool write, const void* pc) {
    Page* page = nullptr;
    uintptr_t page_no = ~uintptr_t{0};
    for (size_t i = 0; i < n; ++i) {
        const uintptr_t b = a + i;
        if (b / kPageBytes != page_no) {
            page_no = b / kPageBytes;
            std::unique_ptr<Page>& p = g_pages[page_no];
            if (!p) p = std::make_unique<Page>();
            page = p.get();
        }
        GCell& c = page->cells[b % kPageBytes];
        if (c.launch != g_launch) c = GCell{g_launch, 0, 0, 0};
        if (c.w != 0 && c.w != g_block && !(!write && g_published[c.w] && g_acquired)) {
            report_device(write ? "write-after-write" : "read-after-write", b, c.w, "wrote",
                          write ? "writes" : "reads", pc);
        }
        if (write) {
            for (uint16_t rd : {c.r, c.r2}) {
                if (rd != 0 && rd != g_block)
                    report_device("write-after-read", b, rd, "read", "writes", pc);
            }
            c.w = g_block;
            c.r = c.r2 = 0;
        } else if (c.r != g_block) {
            c.r2 = c.r;
            c.r = g_block;
        }
    }
}

Access now() {
    Access a;
    a.bar = g_bar;
    a.wsync = g_wsync[g_tid / 32];
    a.tid = static_cast<uint16_t>(g_tid);
    return a;
}

// `prev` and `cur` (by different threads) may run in either order: no block barrier between
// them since `since_bar` (the current generation, or a cp.async's issue), and no warp sync
// between them when they are lanes of one warp.
bool concurrent(const Access& prev, const Access& cur, uint32_t since_bar) {
    if (prev.tid == kNobody || prev.tid == cur.tid) return false;
    if (prev.bar < since_bar) return false;
    if (prev.bar == cur.bar && prev.tid / 32 == cur.tid / 32 && prev.wsync != cur.wsync)
        return false;
    return true;
}

std::string where(const void* pc) {
    char buf[512];
    Dl_info info{};
    if (pc && dladdr(pc, &info) != 0 && info.dli_fname) {
        const uintptr_t off =
            reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase);
        std::snprintf(buf, sizeof buf, "code address %p (addr2line -Cfie %s 0x%lx)", pc,
                      info.dli_fname, static_cast<unsigned long>(off - 1));
    } else {
        std::snprintf(buf, sizeof buf, "code address %p", pc);
    }
    return buf;
}

[[noreturn]] void report(const char* kind, const Region& r, size_t byte, const Access& prev,
                         const char* prev_did, const Access& cur, const char* cur_does,
                         const void* pc) {
    const std::string at = pc ? " at " + where(pc) : "";
    std::fprintf(stderr,
                 "cuda emulator: racecheck: %s hazard on byte %zu of %s in block (%u,%u,%u): "
                 "thread %u (warp %u) %s%s; thread %u (warp %u) %s it, and no __syncthreads (in "
                 "one warp: __syncwarp) orders the two\n",
                 kind, byte, r.what, blockIdx.x, blockIdx.y, blockIdx.z, unsigned{cur.tid},
                 cur.tid / 32u, cur_does, at.c_str(), unsigned{prev.tid}, prev.tid / 32u, prev_did);
    std::fflush(stderr);
    std::abort();
}

void check(Region& r, uintptr_t a, size_t n, bool write, const Access& cur, uint32_t since_bar,
           const void* pc, const char* writes = "writes it") {
    const size_t off = a - r.lo;
    n = std::min(n, r.bytes - off);
    for (size_t i = 0; i < n; ++i) {
        Cell& c = r.cells[off + i];
        if (c.gen != g_gen) c = Cell{g_gen, {}, {}, {}};
        if (concurrent(c.write, cur, since_bar)) {
            report(write ? "write-after-write" : "read-after-write", r, off + i, c.write, "wrote",
                   cur, write ? writes : "reads it", pc);
        }
        if (write) {
            for (const Access* rd : {&c.read, &c.other_read}) {
                if (concurrent(*rd, cur, since_bar))
                    report("write-after-read", r, off + i, *rd, "read", cur, writes, pc);
            }
            c.write = cur;
            c.read = c.other_read = Access{};
        } else if (c.read.tid != cur.tid) {
            if (c.read.tid != kNobody) c.other_read = c.read;
            c.read = cur;
        } else {
            c.read = cur;
        }
    }
}

Region* region_of(uintptr_t a) {
    if (a - g_dynamic.lo < g_dynamic.bytes) return &g_dynamic;
    if (a < g_static_lo || a >= g_static_hi) return nullptr;
    for (size_t i = 0; i < g_nstatics; ++i) {
        if (a - g_statics[i].lo < g_statics[i].bytes) return &g_statics[i];
    }
    return nullptr;
}

inline void access(const void* p, size_t n, bool write, const void* pc) {
    if (!g_active) return;
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (Region* r = region_of(a)) {
        check(*r, a, n, write, now(), g_bar, pc);
    } else if (g_check_device && a - g_stack_lo >= g_stack_bytes && in_device(a)) {
        check_device(a, n, write, pc);
    }
}

}  // namespace

void begin_block(void* dynamic_smem, size_t bytes, unsigned nthreads) {
    const uint64_t blocks = uint64_t{gridDim.x} * gridDim.y * gridDim.z;
    if (g_new_launch) {
        g_new_launch = false;
        ++g_launch;
        g_check_device = blocks <= kMaxBlocks;
        g_published.assign(g_check_device ? blocks + 1 : 0, 0);
    }
    if (g_check_device) {
        g_block = static_cast<uint16_t>(
            1 + blockIdx.x + gridDim.x * (blockIdx.y + uint64_t{gridDim.y} * blockIdx.z));
    }
    g_fenced = g_atomic = g_acquired = false;
    ++g_gen;
    g_bar = 0;
    g_tid = 0;
    g_nthreads = nthreads;
    g_wsync.assign((nthreads + 31) / 32, 0);
    g_dynamic.lo = reinterpret_cast<uintptr_t>(dynamic_smem);
    g_dynamic.bytes = bytes;
    g_dynamic.what = "dynamic shared memory";
    if (g_dynamic.cells.size() < bytes) g_dynamic.cells.resize(bytes);
    g_nstatics = 0;
    g_static_lo = g_static_hi = 0;
    g_active = true;
}

void end_launch() {
    g_active = false;
    g_new_launch = true;
}

void device_alloc(void* p, size_t bytes) {
    g_device[reinterpret_cast<uintptr_t>(p)] = std::max<size_t>(bytes, 1);
    g_dev_lo = g_dev_hi = g_gap_lo = g_gap_hi = 0;
}

void device_free(void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = g_device.find(a);
    if (it == g_device.end()) return;
    // The shadow of whole pages inside it goes (a later allocation there starts clean anyway:
    // cells of earlier launches are empty).
    for (uintptr_t pg = (a + kPageBytes - 1) / kPageBytes; (pg + 1) * kPageBytes <= a + it->second;
         ++pg) {
        g_pages.erase(pg);
    }
    g_device.erase(it);
    g_dev_lo = g_dev_hi = g_gap_lo = g_gap_hi = 0;
}

void fence() {
    if (g_atomic) g_acquired = true;  // an atomic, then the fence: what others published is seen
    g_fenced = true;
}

void atomic_done() {
    if (g_fenced && g_check_device && g_block < g_published.size()) g_published[g_block] = 1;
    g_atomic = true;
}

void add_static(void* p, size_t bytes) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    for (size_t i = 0; i < g_nstatics; ++i)
        if (g_statics[i].lo == a) return;
    if (g_nstatics == g_statics.size()) g_statics.emplace_back();
    Region& r = g_statics[g_nstatics++];
    r.lo = a;
    r.bytes = bytes;
    r.what = "a static __shared__ array";
    if (r.cells.size() < bytes) r.cells.resize(bytes);
    std::fill(r.cells.begin(), r.cells.begin() + static_cast<std::ptrdiff_t>(bytes), Cell{});
    g_static_lo = g_nstatics == 1 ? a : std::min(g_static_lo, a);
    g_static_hi = std::max(g_static_hi, a + bytes);
}

void set_thread(unsigned tid, const void* stack, size_t stack_bytes) {
    g_tid = tid;
    g_stack_lo = reinterpret_cast<uintptr_t>(stack);
    g_stack_bytes = stack_bytes;
}

void block_synced() {
    ++g_bar;
}

void warp_synced(unsigned warp) {
    if (warp < g_wsync.size()) ++g_wsync[warp];
}

uint32_t copy_issued(void* dst, size_t bytes, const void* pc) {
    access(dst, bytes, true, pc);
    return g_bar;
}

void copy_landed(void* dst, size_t bytes, unsigned tid, uint32_t issued_in) {
    if (!g_active) return;
    const unsigned running = g_tid;
    g_tid = tid;
    const uintptr_t a = reinterpret_cast<uintptr_t>(dst);
    if (Region* r = region_of(a)) {
        check(*r, a, bytes, true, now(), issued_in, nullptr, "waits for its cp.async into it");
    }
    g_tid = running;
}

}  // namespace emu::race

// ---- the hooks GCC's -fsanitize=thread instrumentation calls ----------------------------------
#define FOT_RACE_HOOKS(N)                                            \
    extern "C" void __tsan_read##N(void* p) {                        \
        emu::race::access(p, N, false, __builtin_return_address(0)); \
    }                                                                \
    extern "C" void __tsan_write##N(void* p) {                       \
        emu::race::access(p, N, true, __builtin_return_address(0));  \
    }                                                                \
    extern "C" void __tsan_unaligned_read##N(void* p) {              \
        emu::race::access(p, N, false, __builtin_return_address(0)); \
    }                                                                \
    extern "C" void __tsan_unaligned_write##N(void* p) {             \
        emu::race::access(p, N, true, __builtin_return_address(0));  \
    }
FOT_RACE_HOOKS(1)
FOT_RACE_HOOKS(2)
FOT_RACE_HOOKS(4)
FOT_RACE_HOOKS(8)
FOT_RACE_HOOKS(16)
#undef FOT_RACE_HOOKS

extern "C" void __tsan_read_range(void* p, unsigned long n) {
    emu::race::access(p, n, false, __builtin_return_address(0));
}
extern "C" void __tsan_write_range(void* p, unsigned long n) {
    emu::race::access(p, n, true, __builtin_return_address(0));
}
// Atomics (std::shared_ptr's counts, std::function's managers in the launch wrappers): done
// as asked, sequentially consistent; never on shared memory in the kernels.
#define FOT_RACE_ATOMICS(N, T)                                                                    \
    extern "C" T __tsan_atomic##N##_load(const volatile T* a, int) {                              \
        return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                              \
    }                                                                                             \
    extern "C" void __tsan_atomic##N##_store(volatile T* a, T v, int) {                           \
        __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                 \
    }                                                                                             \
    extern "C" T __tsan_atomic##N##_exchange(volatile T* a, T v, int) {                           \
        return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                       \
    }                                                                                             \
    extern "C" T __tsan_atomic##N##_fetch_add(volatile T* a, T v, int) {                          \
        return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                             \
    extern "C" T __tsan_atomic##N##_fetch_sub(volatile T* a, T v, int) {                          \
        return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                             \
    extern "C" T __tsan_atomic##N##_fetch_and(volatile T* a, T v, int) {                          \
        return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                             \
    extern "C" T __tsan_atomic##N##_fetch_or(volatile T* a, T v, int) {                           \
        return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                         \
    }                                                                                             \
    extern "C" T __tsan_atomic##N##_fetch_xor(volatile T* a, T v, int) {                          \
        return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                             \
    extern "C" int __tsan_atomic##N##_compare_exchange_strong(volatile T* a, T* c, T v, int,      \
                                                              int) {                              \
        return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);   \
    }                                                                                             \
    extern "C" int __tsan_atomic##N##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) { \
        return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);    \
    }                                                                                             \
    extern "C" T __tsan_atomic##N##_compare_exchange_val(volatile T* a, T c, T v, int, int) {     \
        __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);         \
        return c;                                                                                 \
    }
FOT_RACE_ATOMICS(8, unsigned char)
FOT_RACE_ATOMICS(16, unsigned short)
FOT_RACE_ATOMICS(32, int)
FOT_RACE_ATOMICS(64, long)
#undef FOT_RACE_ATOMICS
extern "C" void __tsan_atomic_thread_fence(int) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
extern "C" void __tsan_atomic_signal_fence(int) {}

extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}

#endif  // FOT_EMU_RACECHECK
