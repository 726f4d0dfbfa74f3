// The x86-64 fiber switch that fiber.h declares (nothing to define for its ucontext fallback).
#include "fiber.h"

#if defined(FOT_EMU_FAST_FIBERS)
// fiber.h's switch (System V x86-64): callee-saved registers, then MXCSR and the x87 control
// word, pushed on the running stack, whose pointer goes to *save_sp (rdi); the same popped
// from load_sp (rsi). A new fiber's stack (make_fiber) holds that frame with its entry point
// as the return address.
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
#endif
