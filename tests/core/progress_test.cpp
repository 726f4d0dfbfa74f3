// ProgressLine: the formats of its line, the interval override, and that a disabled line or
// short work prints nothing (stderr is captured: gtest's CaptureStderr).
#include "runtime/core/progress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace fot {
namespace {

using ::testing::HasSubstr;

struct IntervalEnv {
    explicit IntervalEnv(const char* v) {
        if (v) {
            ::setenv("FOT_PROGRESS_INTERVAL", v, 1);
        } else {
            ::unsetenv("FOT_PROGRESS_INTERVAL");
        }
    }
    ~IntervalEnv() { ::unsetenv("FOT_PROGRESS_INTERVAL"); }
};

TEST(ProgressLine, Formats) {
    EXPECT_EQ(ProgressLine::format_duration(45), "45s");
    EXPECT_EQ(ProgressLine::format_duration(192), "3m12s");
    EXPECT_EQ(ProgressLine::format_duration(3720), "1h02m");
    EXPECT_EQ(ProgressLine::format_duration(-1), "?");
    EXPECT_EQ(ProgressLine::format_count(870), "870");
    EXPECT_EQ(ProgressLine::format_count(26000), "26.0k");
    EXPECT_EQ(ProgressLine::format_count(1.3e6), "1.3M");
}

TEST(ProgressLine, IntervalFromTheEnvironment) {
    {
        IntervalEnv env(nullptr);
        EXPECT_EQ(ProgressLine::default_interval(), 5.0);
    }
    {
        IntervalEnv env("0.25");
        EXPECT_EQ(ProgressLine::default_interval(), 0.25);
    }
    for (const char* bad : {"0", "-1", "x", "1s", ""}) {
        IntervalEnv env(bad);
        EXPECT_EQ(ProgressLine::default_interval(), 5.0) << bad;
    }
}

TEST(ProgressLine, PlainLinesWhenDueAndNoneWhenDisabledOrShort) {
    // stderr is not a terminal under ctest: plain log lines.
    IntervalEnv env("0.000001");
    ::testing::internal::CaptureStderr();
    {
        ProgressLine p("prefill", "tokens", 300, /*enabled=*/true);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // > the 1 us interval
        p.update(100);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        p.update(300);
    }
    const std::string on = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(on, HasSubstr("prefill: 100/300 tokens, "));
    EXPECT_THAT(on, HasSubstr("prefill: 300/300 tokens, "));
    EXPECT_THAT(on, HasSubstr(" tokens/s, elapsed "));

    ::testing::internal::CaptureStderr();
    {
        ProgressLine p("prefill", "tokens", 300, /*enabled=*/false);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        p.update(100);
        p.finish();
    }
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");

    IntervalEnv slow("3600");
    ::testing::internal::CaptureStderr();
    {
        ProgressLine p("prefill", "tokens", 300, /*enabled=*/true);
        p.update(300);
    }
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");  // short work stays silent
}

}  // namespace
}  // namespace fot
