// Fiber contexts for the emulator's block scheduler (emu.cpp): one per emulated CUDA thread,
// all on the OS thread that launched the kernel.
//
// On x86-64 the switch is a few instructions that save the callee-saved registers, MXCSR and
// the x87 control word on the old stack and restore them from the new one (the System V ABI
// leaves everything else to the caller). glibc's swapcontext also saves and restores the
// signal mask with a system call per switch, and the emulated tests switch fibers at every
// barrier and warp collective of every thread: on machines where system calls are slow (an
// AMD EPYC VM: 2.5 of a test's 6 minutes were system time) that call dominated. Elsewhere,
// and under AddressSanitizer (which follows ucontext's stack switches, not ours), ucontext.
//
// Contract: make_fiber(c, stack, bytes, entry, link) prepares c to run entry() on the given
// stack the first time it is switched to; entry must never return (it switches away for good
// instead). switch_fiber(from, to) saves the running context into `from` and resumes `to`.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FOT_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FOT_EMU_ASAN 1
#endif

// FOT_EMU_FORCE_UCONTEXT: the fallback on x86-64 too (tests/kernels/emu_fiber_test.cpp).
#if defined(__x86_64__) && !defined(FOT_EMU_ASAN) && !defined(FOT_EMU_FORCE_UCONTEXT)
#define FOT_EMU_FAST_FIBERS 1
#else
#include <ucontext.h>
#endif

namespace emu {

#if defined(FOT_EMU_FAST_FIBERS)

struct FiberContext {
    void* sp = nullptr;  // the saved stack pointer: registers are on that stack
};

extern "C" void fot_emu_switch_stack(void** save_sp, void* load_sp);

inline void make_fiber(FiberContext& c, char* stack, size_t bytes, void (*entry)(),
                       FiberContext* /*link: entry switches away itself*/) {
    auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15};
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                              // entry's return address: it never returns
    *--sp = reinterpret_cast<void*>(entry);       // what the first switch's `ret` jumps to
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12-r15
    uint32_t fp[2];                               // MXCSR, x87 control word: the creating thread's
    asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(fp[0]), "=m"(fp[1]));
    --sp;
    *reinterpret_cast<uint64_t*>(sp) = fp[0] | (uint64_t{fp[1] & 0xffffu} << 32);
    c.sp = sp;
}

inline void switch_fiber(FiberContext& from, FiberContext& to) {
    fot_emu_switch_stack(&from.sp, to.sp);
}

#else

struct FiberContext {
    ucontext_t uc;
};

inline void make_fiber(FiberContext& c, char* stack, size_t bytes, void (*entry)(),
                       FiberContext* link) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = link ? &link->uc : nullptr;
    makecontext(&c.uc, entry, 0);
}

inline void switch_fiber(FiberContext& from, FiberContext& to) {
    swapcontext(&from.uc, &to.uc);
}

#endif

}  // namespace emu
