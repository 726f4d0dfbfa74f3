// MPI process lifetime, the world communicator and the failure policy
// (docs/architecture.md §6.5).
//
// MpiSession is an RAII object created once, at the top of main(): it calls
// MPI_Init_thread(FUNNELED) when the process was started by an MPI launcher (mpirun, mpiexec,
// srun with PMI/PMIx) and MPI_Finalize on destruction. A process started without a launcher
// never touches MPI, so single-rank runs need no MPI runtime at all. All MPI calls must come
// from the thread that created the session.
//
// make_world_communicator() gives an MPI communicator over all ranks when the world has more
// than one rank, else a SelfCommunicator. The MPI communicators work on host buffers,
// complete before returning, chunk counts above INT_MAX, and run every blocking operation
// under the collective watchdog: an operation that does not complete within the
// communicator's timeout (FOT_COLLECTIVE_TIMEOUT seconds, default 600) aborts the world with a
// message naming the operation. MPI errors throw fot::Error with MPI's error string.
//
// Failure policy: an error on any rank ends the whole job. abort_world() logs the message
// with the "[rank r/n]" prefix and calls MPI_Abort(MPI_COMM_WORLD, 1), which kills every
// rank; a single-process run exits with status 1. Executables catch fot::Error at the top
// and call abort_world(); library code throws. The session may live inside the try block:
// while an exception unwinds, ~MpiSession does not finalise (MPI_Finalize would wait for
// peers stuck in a collective), so the catch can still abort the world:
//
//     int main(int argc, char** argv) {
//         try {
//             fot::parallel::MpiSession session(&argc, &argv);
//             auto world = fot::parallel::make_world_communicator();
//             ...
//         } catch (const fot::Error& e) {
//             fot::parallel::abort_world(e.what());
//         }
//     }
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "parallel/device_select.h"

namespace fot::parallel {

class MpiSession {
  public:
    // Initialises MPI when launched under an MPI launcher (or when force_mpi is true), sets
    // the log prefix to "[rank r/n]" when size > 1. Throws when a session already exists in
    // this process or MPI was already finalised.
    MpiSession(int* argc, char*** argv, bool force_mpi = false);
    ~MpiSession();
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    // True when MPI_Init was called by this session.
    bool mpi_initialized() const { return initialized_; }
    int rank() const { return rank_; }
    int size() const { return size_; }
    // Rank on this node: the launcher's variable (see local_rank_from_env in world.h), else
    // the rank in MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), else 0.
    int local_rank() const { return local_rank_; }

    // Whether this process was started by an MPI launcher (environment check only).
    static bool launched_by_mpi();

  private:
    bool initialized_ = false;
    int rank_ = 0;
    int size_ = 1;
    int local_rank_ = 0;
};

// This rank's node as the MpiSession found it: MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) gives
// the local rank and the node's ranks, MPI_Get_processor_name the name, and every local
// rank's CUDA_VISIBLE_DEVICES is gathered. Without MPI (or before a session): one rank on
// this host. Input of select_cuda_device (device_select.h).
const NodeInfo& node_info();

// An MPI communicator over MPI_COMM_WORLD (a duplicate) when MPI is initialised and the world
// has more than one rank, else a SelfCommunicator. Collective when MPI is used.
std::unique_ptr<Communicator> make_world_communicator();
// Always the MPI communicator over MPI_COMM_WORLD, even with one rank; throws when MPI is not
// initialised. For tests and for code that must exercise the MPI path.
std::unique_ptr<Communicator> make_mpi_world_communicator();

// Called by a rank that failed, to tell an error every rank hits (a bad option, a layout that
// does not fit the world size, a bad config.json) from one that only some ranks hit: true
// when every rank of the world called it within `timeout_s` seconds of this rank (a
// non-blocking all-reduce on a communicator of its own, so it never matches a collective the
// other ranks are blocked in). Then rank 0 alone reports the error and every rank finalizes
// MPI and exits with the same code; otherwise the caller aborts the world. False without
// MPI or with one rank. Collective only among failing ranks; call it at most once.
bool every_rank_failed(double timeout_s);

// Logs `msg` as an error with the rank prefix, then MPI_Abort(MPI_COMM_WORLD, 1) when MPI is
// initialised (all ranks die; the launcher exits non-zero), else exits the process with 1.
// Safe to call from any thread and before/after MPI_Init.
[[noreturn]] void abort_world(const std::string& msg);

namespace detail {
// Test hook: the largest element count one MPI call moves (default INT_MAX). Lets tests
// exercise the chunking with small buffers. Not thread-safe; set it before communicating.
void set_mpi_max_chunk(int64_t elements);
int64_t mpi_max_chunk();
}  // namespace detail

}  // namespace fot::parallel
