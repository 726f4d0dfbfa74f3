// World: all rank arithmetic of a run, in one value class (docs/architecture.md §6.1; TRT-LLM
// WorldConfig). Nothing else in fotrt computes ranks from tp/mp/dp.
//
// A world of P ranks is a grid P = dp x mp x tp. Rank order: tp fastest, then mp, then dp:
//     rank = (dp_rank * mp + mp_rank) * tp + tp_rank
// so a tp group is tp consecutive ranks (one node with fast links). A "group" is the tp x mp
// ranks that together run one model instance; dp groups work on different inputs. Each
// group's leader is its rank with tp_rank == 0 and mp_rank == 0; global rank 0 (the leader of
// group 0) is the coordinator of the control plane (docs/architecture.md §6.5).
//
// Memory parallelism places memory block b on mp rank b % mp (docs/architecture.md §6.3).
// The device of a rank is its local rank on the node (first GPU = first rank on the node),
// chosen with CUDA_VISIBLE_DEVICES and sharing rules by select_cuda_device (device_select.h).
//
// World is a cheap, immutable value; the constructor throws fot::Error naming the numbers when
// the layout is invalid. make_group_communicators() builds the three communicators a rank
// uses from the world communicator.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace fot::parallel {

// The model dimensions the tensor-parallel split depends on (HF config.json names).
struct ModelDims {
    int64_t num_attention_heads = 0;
    int64_t intermediate_size = 0;
    int64_t vocab_size = 0;
};

class World {
  public:
    // One rank: tp = mp = dp = 1.
    World() : World(1, 0, 1, 1, 0) {}
    // Throws fot::Error when tp or mp < 1, tp x mp does not divide world_size, or rank /
    // local_rank is out of range.
    World(int world_size, int rank, int tp, int mp, int local_rank = 0);

    int world_size() const { return world_size_; }
    int rank() const { return rank_; }
    int tp() const { return tp_; }
    int mp() const { return mp_; }
    int dp() const { return world_size_ / (tp_ * mp_); }
    int tp_rank() const { return rank_ % tp_; }
    int mp_rank() const { return (rank_ / tp_) % mp_; }
    int dp_rank() const { return rank_ / (tp_ * mp_); }
    // The model instance this rank belongs to (== dp_rank) and its number of ranks (tp x mp).
    int group() const { return dp_rank(); }
    int group_size() const { return tp_ * mp_; }
    int local_rank() const { return local_rank_; }
    // This rank's local rank on the node (the CUDA device is chosen by select_cuda_device,
    // parallel/device_select.h, which also respects CUDA_VISIBLE_DEVICES).
    int device_index() const { return local_rank_; }

    // Global rank of a grid position; throws when a coordinate is out of range.
    int rank_of(int tp_rank, int mp_rank, int dp_rank) const;
    // Global ranks, ascending (= rank order inside the sub-communicators).
    std::vector<int> tp_group_ranks() const;   // my tp group: same mp_rank and dp_rank
    std::vector<int> mp_group_ranks() const;   // my mp group: same tp_rank and dp_rank
    std::vector<int> group_ranks() const;      // every rank of my group (tp x mp)
    std::vector<int> dp_leader_ranks() const;  // the leader of every group, by group id
    int group_leader() const { return rank_of(0, 0, dp_rank()); }
    bool is_group_leader() const { return tp_rank() == 0 && mp_rank() == 0; }
    bool is_coordinator() const { return rank_ == 0; }

    // The mp rank that stores memory block `block` (>= 0) of a memory layer.
    int memory_block_owner(int64_t block) const;
    bool owns_memory_block(int64_t block) const { return memory_block_owner(block) == mp_rank(); }

    // Throws fot::Error when the model cannot be split over tp ranks, e.g.
    // "--tp 3 does not divide num_attention_heads=8".
    void validate(const ModelDims& dims) const;

    // "rank 5/8: tp 1/2, mp 0/2, dp 1/2, device 1"
    std::string describe() const;

  private:
    int world_size_;
    int rank_;
    int tp_;
    int mp_;
    int local_rank_;
};

// The communicators of one rank. tp and mp are never null (size 1 when tp or mp is 1);
// leaders (the dp group leaders, ordered by group id) is null on ranks that are not leaders.
struct GroupCommunicators {
    std::unique_ptr<Communicator> tp;
    std::unique_ptr<Communicator> mp;
    std::unique_ptr<Communicator> leaders;
};

// The node-local rank the launcher exported (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID,
// SLURM_LOCALID, in that order), or -1 when none is set. MpiSession::local_rank() falls back to
// MPI_Comm_split_type(SHARED) and then 0. Throws when a variable is not a non-negative integer.
int local_rank_from_env();

// Collective over `world_comm` (every rank must call it). world_comm's rank and size must be
// world's; the children inherit its timeout.
GroupCommunicators make_group_communicators(const World& world, const Communicator& world_comm);

}  // namespace fot::parallel
