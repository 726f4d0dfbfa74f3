// The Communicator conformance suite, written once and instantiated per implementation:
// SelfCommunicator in the plain unit binary, the MPI communicator in the mpirun binary (NP 2
// and 4), NCCL where a GPU build adds it. Every test is size-generic and reaches the same
// collectives on every rank (EXPECT_* before collectives, never an early return on one rank).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "parallel/communicator.h"

namespace fot::parallel::testing {

struct CommFactory {
    std::string name;
    std::function<std::unique_ptr<Communicator>()> make;
};

inline void PrintTo(const CommFactory& f, std::ostream* os) {
    *os << f.name;
}

inline std::string comm_factory_name(const ::testing::TestParamInfo<CommFactory>& info) {
    return info.param.name;
}

class CommunicatorConformance : public ::testing::TestWithParam<CommFactory> {
  protected:
    void SetUp() override { comm_ = GetParam().make(); }
    Communicator& comm() { return *comm_; }
    std::unique_ptr<Communicator> comm_;
};

// True on every rank iff `ok` is true on every rank (one i32 min all-reduce).
bool all_ranks_agree(Communicator& comm, bool ok);

// Sets the MPI chunk limit for a scope (shrinks it so small buffers exercise chunking).
class ScopedMpiChunk {
  public:
    explicit ScopedMpiChunk(int64_t elements);
    ~ScopedMpiChunk();

  private:
    int64_t saved_;
};

}  // namespace fot::parallel::testing
