// Session: everything a job needs to run one model on this rank: the run and model
// configuration, the process grid and its communicators, the backend, the model (this
// rank's slices), the sequence the jobs feed and, on demand, the tokenizer.
//
// open_session() is collective over the world communicator: every rank must call it with
// the same RunConfig. Rank 0 is the only rank that reads job inputs and writes outputs (the
// jobs broadcast inputs); library code never prints results.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "config/run_config.h"
#include "parallel/communicator.h"
#include "parallel/world.h"
#include "runtime/backend/backend.h"
#include "runtime/io/tokenizer.h"
#include "runtime/model/long_llama.h"

namespace fot {

struct Session {
    RunConfig run;
    ModelConfig model_config;
    parallel::World world;
    parallel::Communicator* world_comm = nullptr;  // not owned
    // Host (MPI/Self) communicators: control plane and host-buffer gathers.
    parallel::GroupCommunicators comms;
    // Device communicators used by the model when the backend is CUDA and a group has several
    // ranks (tp x mp > 1): NCCL for a tp / mp group of more than one rank, a device
    // SelfCommunicator otherwise; leaders stays null. Empty for pure data parallelism (the
    // model then uses `comms`, whose size-1 groups never communicate).
    parallel::GroupCommunicators device_comms;
    std::unique_ptr<Backend> backend;
    std::unique_ptr<LongLlama> model;
    // The document the jobs run (they reset it per input); a server would hold several.
    std::unique_ptr<Sequence> seq;
    std::unique_ptr<Tokenizer> tokenizer;
    double load_seconds = 0.0;

    bool is_root() const { return world.rank() == 0; }
    // Loads <model>/tokenizer.model on first use; throws naming the path when absent (with
    // `without_it`, the caller's advice for working without one, e.g. "give token ids with
    // --ids"; it must only name flags of the running command) and when it has more pieces
    // than the model's vocab_size.
    Tokenizer& get_tokenizer(const std::string& without_it = "");
    // Whether the model directory has a tokenizer.model (loaded or not).
    bool has_tokenizer() const;
    // Full-vocabulary rows from this rank's vocabulary slice `local` [rows, V_r], gathered
    // over the tp group; the result is identical on every rank of the group.
    std::vector<float> gather_vocab(TensorView local);
};

// Collective over `world_comm`. Builds the grid from run.parallel (tp, mp), validates it
// against the model, and loads this rank's weights. The precision is run.precision or, when
// unset, default_precision() of the checkpoint; it goes to the backend (set_precision) and
// to the model (ModelOptions::precision).
std::unique_ptr<Session> open_session(const RunConfig& run, parallel::Communicator& world_comm);

// The precision used when the run does not set one: kFast for bf16/f16 linear weights
// (what such checkpoints are made for), kExact for f32 (the golden contract).
Precision default_precision(DType linear_weight_dtype);

// Reads a flat JSON list of token ids (IDS.json); throws naming the file on any problem.
std::vector<int32_t> read_ids_json(const std::string& path);

// Broadcasts ids from rank 0 of `comm` to all ranks.
void broadcast_ids(parallel::Communicator& comm, std::vector<int32_t>& ids);

}  // namespace fot
