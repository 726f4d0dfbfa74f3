// CUDA emulator: the shared-memory racecheck (what `compute-sanitizer --tool racecheck` reports
// on a GPU), built when FOT_EMU_RACECHECK is defined (kernels/cuda/emu/README.md).
//
// The emulated kernels are compiled with GCC's -fsanitize=thread instrumentation but linked
// without its runtime: racecheck.cpp defines the __tsan_read*/__tsan_write* hooks the compiler
// calls for every load and store. A hook ignores everything but the running block's shared
// memory (dynamic, and the static __shared__ arrays registered by poison_static). For each
// shared byte it keeps the last write and the last reads: the thread, and the block barrier
// and warp-sync generations it happened in. Two accesses of different threads to a byte, one
// of them a write, with no __syncthreads between them (and, within a warp, no __syncwarp or
// warp collective) are a hazard: the emulator aborts naming it, the threads and the code
// address of the second access. This holds whatever order the scheduler picked, so a missing
// barrier is reported even when this run's order happened to give the right data.
// cp.async writes count from the copy's issue to the cp.async.wait_group that covers it.
//
//
// Device memory (cudaMalloc'd) is checked between the blocks of one launch, whose order a GPU
// does not fix: a byte written by one block and read or written by another, or read by one and
// then written by another, is a hazard, unless the writer published its writes and the reader
// acquired them, the last-block pattern (threadFenceReduction's): the writer's block ran
// __threadfence() and then an atomic (its ticket), the reader's block an atomic and then
// __threadfence(). Atomics themselves are not accesses here (concurrent atomics are fine).
//
// Approximations: a partial-mask warp sync orders all lanes of the warp; of the reads since the
// last write, the last reader and one other are remembered (threads in shared memory, blocks
// in device memory); bytes copied by memcpy calls the compiler did not inline are not seen (nor
// cp.async's reads of device memory, nor cuBLAS); a block that published counts as having
// published all its writes; launches of more than 65,534 blocks are not checked in device
// memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace emu::race {

#if defined(FOT_EMU_RACECHECK)
void begin_block(void* dynamic_smem, size_t bytes, unsigned nthreads);
void end_launch();
void add_static(void* p, size_t bytes);
// The running thread, and its fiber's stack (its registers: never shared, so not checked).
void set_thread(unsigned tid, const void* stack, size_t stack_bytes);
void block_synced();
void warp_synced(unsigned warp);
// A cp.async issued by the running thread: its destination's hazards are checked from the
// issue's barrier generation (returned) to the covering wait, where copy_landed records it.
uint32_t copy_issued(void* dst, size_t bytes, const void* pc);
void copy_landed(void* dst, size_t bytes, unsigned tid, uint32_t issued_in);
// cudaMalloc / cudaFree: the device memory that the inter-block check covers.
void device_alloc(void* p, size_t bytes);
void device_free(void* p);
// A __threadfence() in the running block (emu::thread_fence).
void fence();
#else
inline void begin_block(void*, size_t, unsigned) {}
inline void end_launch() {}
inline void add_static(void*, size_t) {}
inline void set_thread(unsigned, const void*, size_t) {}
inline void block_synced() {}
inline void warp_synced(unsigned) {}
inline uint32_t copy_issued(void*, size_t, const void*) {
    return 0;
}
inline void copy_landed(void*, size_t, unsigned, uint32_t) {}
inline void device_alloc(void*, size_t) {}
inline void device_free(void*) {}
inline void fence() {}
#endif
// (atomic_done(), an atomic in the running block, is declared by cuda_runtime.h for the
// instrumented kernels, and defined by racecheck.cpp.)

}  // namespace emu::race
