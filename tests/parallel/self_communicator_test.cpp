// The conformance suite on SelfCommunicator, plus what is specific to a process started
// without an MPI launcher: no MPI initialisation, the Self world communicator, abort_world
// exiting with 1.
#include "parallel/self_communicator.h"

#include <gtest/gtest.h>

#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "tests/parallel/communicator_conformance.h"
#include "tests/parallel/scoped_env.h"

namespace fot::parallel::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(Self, CommunicatorConformance,
                         ::testing::Values(CommFactory{
                             "self", [] { return std::make_unique<SelfCommunicator>(); }}),
                         comm_factory_name);

TEST(SelfCommunicator, CollectivesAreIdentityOrCopy) {
    SelfCommunicator c;
    std::vector<float> v = {1.5f, -2.f};
    c.all_reduce_sum(host_view(v.data(), 2));
    c.all_reduce_max(host_view(v.data(), 2));
    EXPECT_EQ(v, (std::vector<float>{1.5f, -2.f}));
    std::vector<float> out(2);
    c.all_gather(host_view(v.data(), 2), host_view(out.data(), 2));
    EXPECT_EQ(out, v);
    EXPECT_THROW(c.send(host_view(v.data(), 2), 0), Error);
    EXPECT_THROW(c.recv(host_view(v.data(), 2), 1), Error);
    EXPECT_EQ(c.split(-1, 0), nullptr);
    EXPECT_STREQ(c.backend_name(), "self");
}

TEST(SelfCommunicator, OnACudaDeviceOnlyInPlaceWorkIsAllowed) {
    // No GPU memory is touched: these operations need no copy.
    SelfCommunicator c(Device::cuda(0));
    float fake[2] = {0, 0};  // stands in for a device pointer; never dereferenced
    TensorView dev{fake, DType::kBF16, {2}, Device::cuda(0)};
    EXPECT_NO_THROW(c.all_reduce_sum(dev));
    EXPECT_NO_THROW(c.all_gather(dev, dev));
    EXPECT_NO_THROW(c.broadcast(dev, 0));
    TensorView other{fake + 1, DType::kBF16, {2}, Device::cuda(0)};
    EXPECT_THROW(c.all_gather(dev, other), Error);
    EXPECT_THROW(c.all_reduce_sum(host_view(fake, 2)), Error);  // host buffer, device comm
    std::string s;
    EXPECT_THROW(c.broadcast_string(s, 0), Error);
}

TEST(MpiSession, WithoutALauncherMpiIsNotInitialised) {
    ScopedEnv a("OMPI_COMM_WORLD_SIZE", nullptr), b("PMIX_RANK", nullptr), c("PMI_RANK", nullptr),
        d("PMI_SIZE", nullptr), e("MPI_LOCALNRANKS", nullptr), f("SLURM_STEP_ID", nullptr),
        g("FOT_MPI", nullptr);
    EXPECT_FALSE(MpiSession::launched_by_mpi());
    {
        MpiSession session(nullptr, nullptr);
        EXPECT_FALSE(session.mpi_initialized());
        EXPECT_EQ(session.rank(), 0);
        EXPECT_EQ(session.size(), 1);
        EXPECT_THROW(MpiSession(nullptr, nullptr), Error);  // one per process
        auto world = make_world_communicator();
        EXPECT_STREQ(world->backend_name(), "self");
        EXPECT_THROW(make_mpi_world_communicator(), Error);
    }
    MpiSession again(nullptr, nullptr);  // the first one was released
    EXPECT_EQ(log_prefix(), "");
}

TEST(MpiSession, LauncherDetection) {
    ScopedEnv a("OMPI_COMM_WORLD_SIZE", nullptr), b("PMIX_RANK", nullptr), c("PMI_RANK", nullptr),
        d("PMI_SIZE", nullptr), e("MPI_LOCALNRANKS", nullptr), f("SLURM_STEP_ID", nullptr);
    {
        ScopedEnv g("FOT_MPI", nullptr);
        ScopedEnv h("PMIX_RANK", "3");
        EXPECT_TRUE(MpiSession::launched_by_mpi());
    }
    {
        ScopedEnv g("FOT_MPI", "0");
        ScopedEnv h("OMPI_COMM_WORLD_SIZE", "2");
        EXPECT_FALSE(MpiSession::launched_by_mpi());
    }
    {
        ScopedEnv g("FOT_MPI", "1");
        EXPECT_TRUE(MpiSession::launched_by_mpi());
    }
    ScopedEnv g("FOT_MPI", "yes");
    EXPECT_THROW(MpiSession::launched_by_mpi(), Error);
}

TEST(AbortWorldDeathTest, SingleProcessLogsAndExitsWithOne) {
    EXPECT_EXIT(abort_world("rank-local failure: checkpoint shard 3 is truncated"),
                ::testing::ExitedWithCode(1), "error: rank-local failure: checkpoint shard 3");
}

}  // namespace
}  // namespace fot::parallel::testing
