// RecordLog: journaled output that resumes after a kill at any point with every record
// exactly once (the kill points are simulated by cutting the files as a kill would leave them).
#include "runtime/jobs/journal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/core/status.h"

namespace fot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class RecordLogTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("fot_journal_test_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        out_ = (dir_ / "out.jsonl").string();
        opts_.fingerprint = R"({"task":"score","model":"m"})";
    }
    void TearDown() override { fs::remove_all(dir_); }

    static std::string read(const std::string& p) {
        std::ifstream in(p, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    static void append_raw(const std::string& p, const std::string& s) {
        std::ofstream(p, std::ios::binary | std::ios::app) << s;
    }
    static std::string rec(int i) { return "{\"id\":" + std::to_string(i) + "}"; }

    std::string error_of(const RecordLogOptions& o) {
        try {
            RecordLog log(out_, o);
        } catch (const Error& e) {
            return e.what();
        }
        ADD_FAILURE() << "no error";
        return "";
    }

    fs::path dir_;
    std::string out_;
    RecordLogOptions opts_;
};

TEST_F(RecordLogTest, ResumeSkipsJournaledRecords) {
    {
        RecordLog log(out_, opts_);
        EXPECT_EQ(log.resumed(), 0);
        log.append(0, true, rec(0));
        log.append(2, false, rec(2));
        EXPECT_THROW(log.append(2, true, rec(2)), Error);
    }
    RecordLog log(out_, opts_);
    EXPECT_EQ(log.resumed(), 2);
    EXPECT_TRUE(log.done(0));
    EXPECT_FALSE(log.done(1));
    EXPECT_TRUE(log.done(2));
    EXPECT_EQ(log.error_records(), 1);
    log.append(1, true, rec(1));
    EXPECT_EQ(log.records(), 3);
    EXPECT_EQ(read(out_), rec(0) + "\n" + rec(2) + "\n" + rec(1) + "\n");
}

TEST_F(RecordLogTest, UnjournaledAndPartialOutputIsDropped) {
    {
        RecordLog log(out_, opts_);
        log.append(0, true, rec(0));
    }
    // Killed after writing record 1 but before journaling it, then in the middle of record 2.
    append_raw(out_, rec(1) + "\n" + "{\"id\":2");
    // ... and in the middle of a journal line.
    append_raw(out_ + ".journal", "1 1 ");
    {
        RecordLog log(out_, opts_);
        EXPECT_EQ(log.resumed(), 1);
        EXPECT_FALSE(log.done(1));
        EXPECT_EQ(read(out_), rec(0) + "\n");
        log.append(1, true, rec(1));
    }
    RecordLog log(out_, opts_);
    EXPECT_EQ(log.resumed(), 2);
    EXPECT_EQ(read(out_), rec(0) + "\n" + rec(1) + "\n");
}

TEST_F(RecordLogTest, KilledWhileCreatingTheJournalStartsFresh) {
    std::ofstream(out_) << "";
    std::ofstream(out_ + ".journal") << "fotrt-jour";
    RecordLog log(out_, opts_);
    EXPECT_EQ(log.resumed(), 0);
    log.append(0, true, rec(0));
    EXPECT_EQ(read(out_), rec(0) + "\n");
}

TEST_F(RecordLogTest, AnotherJobsJournalIsRefused) {
    {
        RecordLog log(out_, opts_);
        log.append(0, true, rec(0));
    }
    RecordLogOptions other = opts_;
    other.fingerprint = R"({"task":"score","model":"other"})";
    EXPECT_THAT(error_of(other),
                HasSubstr("belongs to a different job: model (was \"m\", now \"other\")"));
    // restart discards it.
    other.restart = true;
    RecordLog log(out_, other);
    EXPECT_EQ(log.resumed(), 0);
    EXPECT_EQ(read(out_), "");
}

TEST_F(RecordLogTest, OutputWithoutJournalIsNotOverwritten) {
    std::ofstream(out_) << "precious\n";
    EXPECT_THAT(error_of(opts_), HasSubstr("exists but has no journal"));
    EXPECT_EQ(read(out_), "precious\n");
}

TEST_F(RecordLogTest, CorruptJournalOrShortOutput) {
    {
        RecordLog log(out_, opts_);
        log.append(0, true, rec(0));
        log.append(1, true, rec(1));
    }
    const std::string journal = read(out_ + ".journal");
    // The output lost a journaled record (edited by hand).
    std::ofstream(out_) << rec(0) << "\n";
    EXPECT_THAT(error_of(opts_), HasSubstr("is shorter"));
    // A garbled journal line.
    std::ofstream(out_ + ".journal") << journal << "x y z\n";
    EXPECT_THAT(error_of(opts_), HasSubstr("is corrupt"));
    std::ofstream(out_ + ".journal") << "something else\n";
    EXPECT_THAT(error_of(opts_), HasSubstr("has no valid header"));
}

TEST_F(RecordLogTest, PlainOutputIsTruncated) {
    std::ofstream(out_) << "old\n";
    RecordLogOptions plain;
    plain.journal = false;
    {
        RecordLog log(out_, plain);
        log.append(0, true, rec(0));
    }
    EXPECT_EQ(read(out_), rec(0) + "\n");
    EXPECT_FALSE(fs::exists(out_ + ".journal"));
}

TEST_F(RecordLogTest, MissingDirectoryIsNamed) {
    RecordLogOptions o = opts_;
    try {
        RecordLog log((dir_ / "nope" / "out.jsonl").string(), o);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("does not exist"));
    }
}

// Two jobs on one output (a requeued job overlapping the first): the second is refused at
// start, naming the holder, and touches nothing; the first goes on and its output is exact.
TEST_F(RecordLogTest, SecondWriterOfAnOutputIsRefused) {
    for (bool journal : {true, false}) {
        SCOPED_TRACE(journal ? "journaled" : "plain");
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        RecordLogOptions o = opts_;
        o.journal = journal;
        RecordLog first(out_, o);
        first.append(0, true, rec(0));
        const std::string before = read(out_);
        for (bool restart : {false, true}) {
            RecordLogOptions second = o;
            second.restart = restart;
            const std::string msg = error_of(second);
            EXPECT_THAT(msg, HasSubstr("output " + out_ + " is in use by another job (pid " +
                                       std::to_string(::getpid()) + " on host "));
            EXPECT_THAT(msg, HasSubstr("lock file " + out_ + ".lock"));
            EXPECT_EQ(read(out_), before);  // neither truncated nor removed
            if (journal) {
                EXPECT_TRUE(fs::exists(out_ + ".journal"));
            }
        }
        first.append(1, false, rec(1));
        EXPECT_EQ(read(out_), rec(0) + "\n" + rec(1) + "\n");
    }
    // Released with the log (and the lock file removed): the next job resumes.
    EXPECT_FALSE(fs::exists(out_ + ".lock"));
    RecordLogOptions o = opts_;
    o.journal = false;
    RecordLog again(out_, o);
    EXPECT_TRUE(fs::exists(out_ + ".lock"));
}

TEST_F(RecordLogTest, StaleLockFileOfAKilledJobIsTakenOver) {
    // A job killed with SIGKILL leaves OUT.lock behind, but not its lock.
    std::ofstream(out_ + ".lock") << "pid 1 on host gone, started long ago\n";
    {
        RecordLog log(out_, opts_);
        log.append(0, true, rec(0));
        EXPECT_THAT(read(out_ + ".lock"), HasSubstr("pid " + std::to_string(::getpid())));
    }
    RecordLog log(out_, opts_);
    EXPECT_EQ(log.resumed(), 1);
}

}  // namespace
}  // namespace fot
