#include "runtime/core/status.h"

#include <gtest/gtest.h>

#include "runtime/core/logging.h"

namespace fot {
namespace {

TEST(Status, CheckThrowsWithConcatenatedMessage) {
    try {
        int k = 3;
        FOT_CHECK(k < 2, "k=", k, " must be < ", 2);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "k=3 must be < 2");
    }
    EXPECT_NO_THROW(FOT_CHECK(true, "never"));
}

TEST(Status, AssertNamesTheBug) {
    try {
        FOT_ASSERT(1 + 1 == 3);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("1 + 1 == 3"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("status_test.cpp"), std::string::npos);
    }
}

TEST(Status, ResultCarriesValueOrStatus) {
    Result<int> ok(5);
    EXPECT_TRUE(ok.ok());
    EXPECT_EQ(ok.value(), 5);
    Result<int> bad(Status::error("config.json: hidden_size must be > 0"));
    EXPECT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().message(), "config.json: hidden_size must be > 0");
    EXPECT_THROW(bad.value(), Error);
}

TEST(Logging, RankPrefixAndLevels) {
    EXPECT_EQ(log_prefix(), "");
    set_log_rank(2, 4);
    EXPECT_EQ(log_prefix(), "[rank 2/4] ");
    set_log_rank(-1, 0);
    LogLevel l;
    EXPECT_TRUE(parse_log_level("debug", &l));
    EXPECT_EQ(l, LogLevel::kDebug);
    EXPECT_FALSE(parse_log_level("loud", &l));
}

}  // namespace
}  // namespace fot
