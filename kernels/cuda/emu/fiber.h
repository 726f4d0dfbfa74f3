// Fiber contexts for the emulator's block scheduler (emu.cpp): one per emulated CUDA thread,
// all on the OS thread that launched the kernel.
//
// On x86-64 the switch is a few instructions that save the callee-saved registers, MXCSR and
// the x87 control word on the old stack and restore them from the new one (the System V ABI
// leaves everything else to the caller). glibc's swapcontext also saves and restores the
// signal mask with a system call per switch, and the emulated tests switch fibers at every
// barrier and warp collective of every thread: on machines where system calls are slow (an
// AMD EPYC VM: 2.5 of a test's 6 minutes were system time) that call dominated. Elsewhere,
// ucontext.
//
// Under AddressSanitizer (the emulated memcheck build, kernels/cuda/emu/README.md) every
// switch is announced to it (__sanitizer_start_switch_fiber / _finish_switch_fiber), so that
// it knows which stack runs: without that, a fiber's frames look like wild stack pointers
// and the reports of kernel bugs would name the wrong stack.
//
// Contract: make_fiber(c, stack, bytes, entry, link) prepares c to run entry() on the given
// stack the first time it is switched to; entry must never return (it ends with
// exit_to(), which switches away for good). switch_fiber(from, to) saves the running context
// into `from` and resumes `to`. A context that was never made (the scheduler's, on the
// thread's own stack) is filled in by the first switch away from it.
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
#if defined(__x86_64__) && !defined(FOT_EMU_FORCE_UCONTEXT)
#define FOT_EMU_FAST_FIBERS 1
#else
#include <ucontext.h>
#endif

namespace emu {

struct FiberContext {
#if defined(FOT_EMU_FAST_FIBERS)
    void* sp = nullptr;  // the saved stack pointer: registers are on that stack
#else
    ucontext_t uc;
#endif
    void (*entry)() = nullptr;       // what a made fiber runs first
    const void* stack_lo = nullptr;  // its stack (for AddressSanitizer), or the thread's
    size_t stack_bytes = 0;          //   own once a switch left it
};

void make_fiber(FiberContext& c, char* stack, size_t bytes, void (*entry)(), FiberContext* link);
void switch_fiber(FiberContext& from, FiberContext& to);
// The last switch of a fiber whose entry is done: `from` is never resumed (AddressSanitizer
// drops its stack's bookkeeping).
[[noreturn]] void exit_to(FiberContext& from, FiberContext& to);

}  // namespace emu
