// The one main() of multi-rank GoogleTest binaries (fot_add_mpi_test in cmake/fot_testing.cmake;
// modelled on nccl_m2n's basic_api_test_mpi).
//
// - MpiSession first (MPI is always initialised here, also when started without mpirun).
// - Rank 0 prints the usual GoogleTest report; the other ranks print only their failed
//   assertions, prefixed with their rank, so a failure on rank 3 is not lost.
// - Exceptions are not caught by GoogleTest: a fot::Error escaping a test on one rank would
//   otherwise leave the other ranks blocked in the next collective. It reaches this main,
//   which aborts the world with the rank's message.
// - A barrier after each test keeps the ranks in step.
// - The exit code is the MPI_MAX of every rank's RUN_ALL_TESTS() result, so all ranks agree.
#include <mpi.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <exception>
#include <string>

#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/core/status.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
  public:
    // The name is kept from OnTestStart: UnitTest::current_test_info() would take the lock
    // that GoogleTest holds while it reports a part result (deadlock).
    void OnTestStart(const ::testing::TestInfo& t) override {
        test_ = std::string(t.test_suite_name()) + "." + t.name();
    }
    void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (!r.failed()) return;
        std::fprintf(stdout, "%s%s:%d: failure in %s\n%s\n", fot::log_prefix().c_str(),
                     r.file_name() ? r.file_name() : "?", r.line_number(), test_.c_str(),
                     r.message());
        std::fflush(stdout);
    }

  private:
    std::string test_;
};

class BarrierAfterEachTest : public ::testing::EmptyTestEventListener {
  public:
    void OnTestEnd(const ::testing::TestInfo&) override { MPI_Barrier(MPI_COMM_WORLD); }
};

}  // namespace

int main(int argc, char** argv) {
    try {
        fot::parallel::MpiSession session(&argc, &argv, /*force_mpi=*/true);
        ::testing::InitGoogleTest(&argc, argv);
        GTEST_FLAG_SET(catch_exceptions, false);
        auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
        if (session.rank() != 0) {
            delete listeners.Release(listeners.default_result_printer());
            listeners.Append(new RankFailurePrinter);
        }
        listeners.Append(new BarrierAfterEachTest);
        int rc = RUN_ALL_TESTS();
        int agreed = rc;
        MPI_Allreduce(&rc, &agreed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (agreed != 0 && session.rank() == 0) {
            std::fprintf(stdout, "some rank failed (exit code %d): see the [rank r/n] lines\n",
                         agreed);
        }
        return agreed;  // ~MpiSession calls MPI_Finalize
    } catch (const fot::Error& e) {
        fot::parallel::abort_world(std::string("uncaught error: ") + e.what());
    } catch (const std::exception& e) {
        fot::parallel::abort_world(std::string("uncaught exception: ") + e.what());
    }
}
