// The fiber switch that fiber.h declares: the x86-64 stack switch, or ucontext; either way
// announced to AddressSanitizer in its builds.
#include "fiber.h"

#include <cstdlib>

#if defined(FOT_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(FOT_EMU_FAST_FIBERS)
// The switch (System V x86-64): callee-saved registers, then MXCSR and the x87 control word,
// pushed on the running stack, whose pointer goes to *save_sp (rdi); the same popped from
// load_sp (rsi). A new fiber's stack (make_fiber) holds that frame with the fiber start as
// the return address.
asm(R"(
    .text
    .globl fot_emu_switch_stack
    .hidden fot_emu_switch_stack
    .type fot_emu_switch_stack, @function
fot_emu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size fot_emu_switch_stack, .-fot_emu_switch_stack
)");
extern "C" void fot_emu_switch_stack(void** save_sp, void* load_sp);
#endif

namespace emu {
namespace {

// The switch in flight: set by the fiber that switches, read by the one that resumes (all
// fibers of a thread run on it, one at a time).
#if defined(FOT_EMU_ASAN)
constexpr size_t kUnpoisonTop = 16 * 1024;
#endif

thread_local FiberContext* t_from = nullptr;
thread_local FiberContext* t_to = nullptr;

// On the resumed side of a switch. AddressSanitizer reports the stack we came from: the first
// switch away from the thread's own stack is how its bounds become known.
void finish_switch([[maybe_unused]] void* fake_stack) {
#if defined(FOT_EMU_ASAN)
    const void* lo = nullptr;
    size_t bytes = 0;
    __sanitizer_finish_switch_fiber(fake_stack, &lo, &bytes);
    if (t_from && !t_from->stack_lo) {
        t_from->stack_lo = lo;
        t_from->stack_bytes = bytes;
    }
#endif
}

void raw_switch(FiberContext& from, FiberContext& to, [[maybe_unused]] bool for_good) {
    t_from = &from;
    t_to = &to;
#if defined(FOT_EMU_ASAN)
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(for_good ? nullptr : &fake_stack, to.stack_lo, to.stack_bytes);
#else
    void* fake_stack = nullptr;
#endif
#if defined(FOT_EMU_FAST_FIBERS)
    fot_emu_switch_stack(&from.sp, to.sp);
#else
    swapcontext(&from.uc, &to.uc);
#endif
    finish_switch(fake_stack);
}

// Where every made fiber starts: the first half of a switch happened on another stack.
void fiber_start() {
    FiberContext* self = t_to;
    finish_switch(nullptr);
    self->entry();
    std::abort();  // fiber.h: an entry never returns
}

}  // namespace

void make_fiber(FiberContext& c, char* stack, size_t bytes, void (*entry)(),
                [[maybe_unused]] FiberContext* link) {
    c.entry = entry;
    c.stack_lo = stack;
    c.stack_bytes = bytes;
#if defined(FOT_EMU_ASAN)
    // A reused stack still has the redzones of the frames its last fiber never left: the few
    // at its top that switched away for good (fiber_start, the entry, exit_to); deeper frames
    // returned and cleared their own. Clearing only the top keeps this from dominating the
    // emulated tests (a whole 1 MiB stack is 128 KiB of shadow per thread and block).
    const size_t used = bytes < kUnpoisonTop ? bytes : kUnpoisonTop;
    ASAN_UNPOISON_MEMORY_REGION(stack + bytes - used, used);
#endif
#if defined(FOT_EMU_FAST_FIBERS)
    auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15};
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                // fiber_start's return address: none
    *--sp = reinterpret_cast<void*>(&fiber_start);  // what the first switch's `ret` jumps to
    for (int i = 0; i < 6; ++i) *--sp = nullptr;    // rbp, rbx, r12-r15
    uint32_t fp[2];  // MXCSR, x87 control word: the creating thread's
    asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(fp[0]), "=m"(fp[1]));
    --sp;
    *reinterpret_cast<uint64_t*>(sp) = fp[0] | (uint64_t{fp[1] & 0xffffu} << 32);
    c.sp = sp;
#else
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = link ? &link->uc : nullptr;
    makecontext(&c.uc, fiber_start, 0);
#endif
}

void switch_fiber(FiberContext& from, FiberContext& to) {
    raw_switch(from, to, false);
}

void exit_to(FiberContext& from, FiberContext& to) {
    raw_switch(from, to, true);
    std::abort();  // a fiber that exited was resumed
}

}  // namespace emu
