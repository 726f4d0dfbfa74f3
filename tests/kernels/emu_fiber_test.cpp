// The CUDA emulator's fibers (kernels/cuda/emu/fiber.h): switches go where they are asked,
// each fiber keeps its own stack and its own floating-point control state (MXCSR and the x87
// control word: a rounding mode set by one fiber must not leak into another or into the
// scheduler). Built twice: with the x86-64 switch (the default there) and with
// FOT_EMU_FORCE_UCONTEXT (the fallback that other targets use).
#include <gtest/gtest.h>

#include <cfenv>
#include <cstdlib>
#include <memory>
#include <vector>

#include "fiber.h"

namespace {

#if defined(FOT_EMU_FAST_FIBERS)
constexpr bool kFastFibers = true;
#else
constexpr bool kFastFibers = false;
#endif

constexpr int kFibers = 4;
constexpr int kRounds = 40;
constexpr int kModes[kFibers] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};

struct Quotients {
    double sse;       // an SSE division: rounded per MXCSR
    long double x87;  // an x87 division: rounded per the x87 control word
};

Quotients divide() {
    volatile double a = 1.0, b = 3.0;
    volatile long double c = 1.0L, d = 3.0L;
    return {a / b, c / d};
}

// The quotients of each mode, computed on the test's own stack.
Quotients expected[kFibers];

emu::FiberContext scheduler;
emu::FiberContext fibers[kFibers];
int running = -1;            // the fiber the scheduler switched to last
std::vector<int> log_;       // fiber * 1000 + round, in the order the steps ran
int finished[kFibers] = {};  // rounds each fiber completed, seen from its own stack

void entry() {
    const int me = running;
    std::fesetround(kModes[me]);
    volatile int rounds = 0;  // on this fiber's stack, across every switch
    char pattern[512];        // a stack frame the other fibers must not touch
    for (int i = 0; i < 512; ++i) pattern[i] = static_cast<char>(me * 31 + i);
    for (int r = 0; r < kRounds; ++r) {
        log_.push_back(me * 1000 + r);
        const Quotients q = divide();
        EXPECT_EQ(std::fegetround(), kModes[me]) << "fiber " << me << " round " << r;
        EXPECT_EQ(q.sse, expected[me].sse) << "fiber " << me << " round " << r;
        EXPECT_EQ(q.x87, expected[me].x87) << "fiber " << me << " round " << r;
        rounds = rounds + 1;
        emu::switch_fiber(fibers[me], scheduler);
    }
    bool intact = true;
    for (int i = 0; i < 512; ++i) intact &= pattern[i] == static_cast<char>(me * 31 + i);
    EXPECT_TRUE(intact) << "fiber " << me;
    finished[me] = rounds;
    emu::exit_to(fibers[me], scheduler);
}

TEST(EmuFiber, SwitchesKeepEachFibersStackAndRoundingMode) {
    for (int m = 0; m < kFibers; ++m) {
        std::fesetround(kModes[m]);
        expected[m] = divide();
    }
    std::fesetround(FE_TONEAREST);
    // The modes really round 1/3 differently, or the check could not fail.
    EXPECT_NE(expected[1].sse, expected[2].sse);
    EXPECT_NE(expected[1].x87, expected[2].x87);

    constexpr size_t kStack = 256 * 1024;
    std::vector<std::unique_ptr<char[]>> stacks;
    for (int f = 0; f < kFibers; ++f) {
        stacks.emplace_back(new char[kStack]);
        emu::make_fiber(fibers[f], stacks.back().get(), kStack, entry, &scheduler);
    }
    // Round robin, in reverse order every other round.
    std::vector<int> want;
    for (int r = 0; r <= kRounds; ++r) {
        for (int i = 0; i < kFibers; ++i) {
            const int f = r % 2 ? kFibers - 1 - i : i;
            running = f;
            if (r < kRounds) want.push_back(f * 1000 + r);
            emu::switch_fiber(scheduler, fibers[f]);
            ASSERT_EQ(std::fegetround(), FE_TONEAREST) << "after fiber " << f << " round " << r;
            const Quotients q = divide();
            ASSERT_EQ(q.sse, expected[0].sse);
            ASSERT_EQ(q.x87, expected[0].x87);
        }
    }
    EXPECT_EQ(log_, want);
    for (int f = 0; f < kFibers; ++f) EXPECT_EQ(finished[f], kRounds) << "fiber " << f;
}

TEST(EmuFiber, ThisBuildUsesTheSwitchItWasBuiltFor) {
#if defined(FOT_EMU_FORCE_UCONTEXT)
    EXPECT_FALSE(kFastFibers);
#elif defined(__x86_64__)
    EXPECT_TRUE(kFastFibers);
#else
    EXPECT_FALSE(kFastFibers);
#endif
}

}  // namespace
