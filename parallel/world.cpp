#include "parallel/world.h"

#include <cerrno>
#include <cstdlib>

namespace fot::parallel {

World::World(int world_size, int rank, int tp, int mp, int local_rank)
    : world_size_(world_size), rank_(rank), tp_(tp), mp_(mp), local_rank_(local_rank) {
    FOT_CHECK(world_size >= 1, "world size ", world_size, " must be >= 1");
    FOT_CHECK(tp >= 1, "--tp ", tp, " must be >= 1");
    FOT_CHECK(mp >= 1, "--mp ", mp, " must be >= 1");
    const int64_t group = static_cast<int64_t>(tp) * mp;
    FOT_CHECK(world_size % group == 0, "--tp ", tp, " x --mp ", mp, " = ", group,
              " does not divide the world size ", world_size,
              " (number of ranks); dp = world / (tp x mp) must be a whole number: run mpirun -np ",
              (world_size + group - 1) / group * group, " (or another multiple of ", group,
              "), or lower --tp / --mp");
    FOT_CHECK(rank >= 0 && rank < world_size, "rank ", rank, " is out of range for world size ",
              world_size);
    FOT_CHECK(local_rank >= 0, "local rank ", local_rank, " must be >= 0");
}

int World::rank_of(int tp_rank, int mp_rank, int dp_rank) const {
    FOT_CHECK(tp_rank >= 0 && tp_rank < tp_, "tp rank ", tp_rank, " out of range [0, ", tp_, ")");
    FOT_CHECK(mp_rank >= 0 && mp_rank < mp_, "mp rank ", mp_rank, " out of range [0, ", mp_, ")");
    FOT_CHECK(dp_rank >= 0 && dp_rank < dp(), "dp rank ", dp_rank, " out of range [0, ", dp(), ")");
    return (dp_rank * mp_ + mp_rank) * tp_ + tp_rank;
}

std::vector<int> World::tp_group_ranks() const {
    std::vector<int> r;
    for (int t = 0; t < tp_; ++t) r.push_back(rank_of(t, mp_rank(), dp_rank()));
    return r;
}

std::vector<int> World::mp_group_ranks() const {
    std::vector<int> r;
    for (int m = 0; m < mp_; ++m) r.push_back(rank_of(tp_rank(), m, dp_rank()));
    return r;
}

std::vector<int> World::group_ranks() const {
    std::vector<int> r;
    for (int m = 0; m < mp_; ++m)
        for (int t = 0; t < tp_; ++t) r.push_back(rank_of(t, m, dp_rank()));
    return r;
}

std::vector<int> World::dp_leader_ranks() const {
    std::vector<int> r;
    for (int d = 0; d < dp(); ++d) r.push_back(rank_of(0, 0, d));
    return r;
}

int World::memory_block_owner(int64_t block) const {
    FOT_CHECK(block >= 0, "memory block index ", block, " must be >= 0");
    return static_cast<int>(block % mp_);
}

void World::validate(const ModelDims& dims) const {
    struct Dim {
        const char* name;
        int64_t value;
    };
    const Dim checks[] = {{"num_attention_heads", dims.num_attention_heads},
                          {"intermediate_size", dims.intermediate_size},
                          {"vocab_size", dims.vocab_size}};
    std::string bad;
    for (const Dim& d : checks) {
        FOT_CHECK(d.value >= 1, "model dimension ", d.name, "=", d.value, " must be >= 1");
        if (d.value % tp_ != 0) bad += str(bad.empty() ? "" : ", ", d.name, "=", d.value);
    }
    FOT_CHECK(bad.empty(), "--tp ", tp_, " does not divide ", bad,
              " (attention heads, MLP columns and the vocabulary are split evenly over tp ranks)");
}

std::string World::describe() const {
    return str("rank ", rank_, "/", world_size_, ": tp ", tp_rank(), "/", tp_, ", mp ", mp_rank(),
               "/", mp_, ", dp ", dp_rank(), "/", dp(), ", device ", device_index());
}

int local_rank_from_env() {
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
        const char* env = std::getenv(name);
        if (env == nullptr || *env == '\0') continue;
        char* end = nullptr;
        errno = 0;
        long v = std::strtol(env, &end, 10);
        FOT_CHECK(errno == 0 && *end == '\0' && v >= 0 && v < (1L << 30), name, "=", env,
                  " is not a local rank (a non-negative integer)");
        return static_cast<int>(v);
    }
    return -1;
}

GroupCommunicators make_group_communicators(const World& world, const Communicator& world_comm) {
    FOT_CHECK(world_comm.size() == world.world_size() && world_comm.rank() == world.rank(),
              "make_group_communicators: the world communicator is rank ", world_comm.rank(),
              " of ", world_comm.size(), " but the World is rank ", world.rank(), " of ",
              world.world_size());
    GroupCommunicators c;
    // Colors enumerate the sub-grids; keys order members by their coordinate, which equals
    // ascending global rank, so sub-communicator ranks are tp_rank / mp_rank / dp_rank.
    c.tp = world_comm.split(world.dp_rank() * world.mp() + world.mp_rank(), world.tp_rank());
    c.mp = world_comm.split(world.dp_rank() * world.tp() + world.tp_rank(), world.mp_rank());
    c.leaders = world_comm.split(world.is_group_leader() ? 0 : -1, world.dp_rank());
    FOT_ASSERT(c.tp && c.tp->size() == world.tp() && c.tp->rank() == world.tp_rank());
    FOT_ASSERT(c.mp && c.mp->size() == world.mp() && c.mp->rank() == world.mp_rank());
    FOT_ASSERT(world.is_group_leader() == (c.leaders != nullptr));
    c.tp->set_group_name("tp");
    c.mp->set_group_name("mp");
    if (c.leaders) c.leaders->set_group_name("dp leaders");
    return c;
}

}  // namespace fot::parallel
