// The conformance suite on the MPI communicator (run under mpirun with 2 and 4 ranks by
// tests/mpi_gtest_main.cpp), plus what only a real MPI world shows.
#include <gtest/gtest.h>

#include "parallel/mpi_session.h"
#include "parallel/world.h"
#include "runtime/core/logging.h"
#include "tests/parallel/communicator_conformance.h"

namespace fot::parallel::testing {
namespace {

std::unique_ptr<Communicator> make_mpi_for_test() {
    auto c = make_mpi_world_communicator();
    // A mismatched collective in a test aborts within a minute, with its name, well inside
    // the ctest TIMEOUT.
    c->set_timeout(60);
    return c;
}

INSTANTIATE_TEST_SUITE_P(Mpi, CommunicatorConformance,
                         ::testing::Values(CommFactory{"mpi", make_mpi_for_test}),
                         comm_factory_name);

TEST(MpiWorld, WorldCommunicatorSpansTheLaunchedRanks) {
    auto world = make_world_communicator();
    auto mpi = make_mpi_world_communicator();
    EXPECT_EQ(mpi->size(), world->size());
    EXPECT_EQ(mpi->rank(), world->rank());
    EXPECT_STREQ(world->backend_name(), world->size() > 1 ? "mpi" : "self");
    if (world->size() > 1) {
        EXPECT_EQ(log_prefix(), "[rank " + std::to_string(world->rank()) + "/" +
                                    std::to_string(world->size()) + "] ");
    }
    // The session already exists (created in main): a second one is refused.
    EXPECT_THROW(MpiSession(nullptr, nullptr), Error);
}

TEST(MpiWorld, LocalRankIsTheRankOnThisNode) {
    // All ranks of a ctest run share one machine, so the local rank equals the world rank.
    const char* env = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    auto world = make_world_communicator();
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(local_rank_from_env(), world->rank());
    World w(world->size(), world->rank(), 1, 1, local_rank_from_env());
    EXPECT_EQ(w.device_index(), world->rank());
}

}  // namespace
}  // namespace fot::parallel::testing
