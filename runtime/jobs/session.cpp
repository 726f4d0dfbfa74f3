#include "runtime/jobs/session.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "parallel/device_select.h"
#include "parallel/mpi_session.h"
#include "parallel/nccl_communicator.h"
#include "parallel/self_communicator.h"
#include "runtime/core/cpu_threads.h"
#include "runtime/core/host_memory.h"
#include "runtime/core/logging.h"
#include "runtime/core/progress.h"
#include "runtime/core/status.h"
#include "runtime/core/timer.h"
#include "runtime/io/checkpoint.h"
#include "runtime/jobs/corpus.h"

namespace fot {

Tokenizer& Session::get_tokenizer(const std::string& without_it) {
    if (!tokenizer) {
        const std::string path = (std::filesystem::path(run.model) / "tokenizer.model").string();
        FOT_CHECK(std::filesystem::exists(path), "model directory ", run.model,
                  " has no tokenizer.model (needed for text; the published checkpoints ship "
                  "one, see docs/models.md",
                  without_it.empty() ? "" : "; ", without_it, ")");
        auto tok = Tokenizer::load(path);
        check_tokenizer_vocab(*tok, path, model_config.vocab_size,
                              (std::filesystem::path(run.model) / "config.json").string());
        tokenizer = std::move(tok);
    }
    return *tokenizer;
}

bool Session::has_tokenizer() const {
    std::error_code ec;
    return tokenizer ||
           std::filesystem::exists(std::filesystem::path(run.model) / "tokenizer.model", ec);
}

std::vector<float> Session::gather_vocab(TensorView local) {
    const int64_t rows = local.shape[0], vr = local.shape[1];
    const int tp = comms.tp->size();
    std::vector<float> host(static_cast<size_t>(rows * vr));
    backend->download(host.data(), local, host.size() * sizeof(float));
    if (tp == 1) return host;
    std::vector<float> all(static_cast<size_t>(tp) * host.size());
    comms.tp->all_gather(parallel::host_view(host.data(), static_cast<int64_t>(host.size())),
                         parallel::host_view(all.data(), static_cast<int64_t>(all.size())));
    // all is [tp, rows, vr]; rows of the full vocabulary are [rows, tp * vr].
    std::vector<float> out(all.size());
    for (int r = 0; r < tp; ++r) {
        for (int64_t i = 0; i < rows; ++i) {
            std::copy_n(all.data() + (static_cast<int64_t>(r) * rows + i) * vr, vr,
                        out.data() + i * tp * vr + r * vr);
        }
    }
    return out;
}

namespace {
// Fault injection for the failure-policy tests (a multi-rank CLI run cannot install a C++
// hook): FOT_INJECT_FAULT="RANK:LAYER" makes the process whose world rank is RANK throw when
// it reaches layer LAYER of a model call; the others are then blocked in a collective and
// must be brought down by the failure policy.
void install_injected_fault(LongLlama& model, int world_rank) {
    const char* e = std::getenv("FOT_INJECT_FAULT");
    int rank = -1;
    long layer = -1;
    if (!e || std::sscanf(e, "%d:%ld", &rank, &layer) != 2 || rank != world_rank) return;
    model.set_layer_hook([layer](int64_t l) {
        FOT_CHECK(l != layer, "injected fault (FOT_INJECT_FAULT) at layer ", l, " of a forward");
    });
}
}  // namespace

std::unique_ptr<Session> open_session(const RunConfig& run, parallel::Communicator& world_comm) {
    Timer timer;
    if (!run.log_level.empty()) {
        LogLevel level;
        FOT_CHECK(parse_log_level(run.log_level, &level), "log_level '", run.log_level,
                  "' is not one of error|warn|info|debug");
        set_log_level(level);
    }
    auto s = std::make_unique<Session>();
    s->run = run;
    s->world_comm = &world_comm;
    const std::string cfg_path = (std::filesystem::path(run.model) / "config.json").string();
    s->model_config = load_model_config(cfg_path).value();
    ModelConfig& mc = s->model_config;
    if (run.last_context_length) mc.last_context_length = *run.last_context_length;
    validate_model_config(mc, cfg_path).check();

    // The node (MpiSession: MPI_Comm_split_type) when world_comm is the MPI world; a world
    // of one process is alone on its node as far as device choice goes.
    parallel::NodeInfo node = parallel::node_info();
    if (world_comm.size() == 1 || node.local_size() > world_comm.size()) {
        node.ranks = {world_comm.rank()};
        node.visible = {node.visible.empty() ? "" : node.visible[node.local_rank]};
        node.local_rank = 0;
    }
    s->world =
        parallel::World(world_comm.size(), world_comm.rank(), static_cast<int>(run.parallel.tp),
                        static_cast<int>(run.parallel.mp), node.local_rank);
    s->world.validate({mc.num_attention_heads, mc.intermediate_size, mc.vocab_size});
    s->comms = parallel::make_group_communicators(s->world, world_comm);
    // NCCL only where a group has several ranks: pure data parallelism (tp x mp == 1) never
    // communicates device buffers.
    const bool nccl = run.backend == "cuda" && s->world.group_size() > 1;
    int device = s->world.device_index();
    if (run.backend == "cuda") {
        const int visible = backend_device_count("cuda");
        // Before any NCCL call: ranks that would share a GPU under NCCL stop here, by name.
        const parallel::DeviceChoice choice = parallel::select_cuda_device(node, visible, nccl);
        if (!choice.warning.empty()) {
            FOT_LOG(kWarn) << choice.warning;
        }
        device = choice.device;
    }
    // --threads 0: an explicit OMP_NUM_THREADS is the user's choice (0 leaves OpenMP's);
    // otherwise this rank's share of the cores it may run on (runtime/core/cpu_threads.h).
    const int threads =
        run.threads > 0 ? static_cast<int>(run.threads)
        : std::getenv("OMP_NUM_THREADS")
            ? 0
            : default_thread_count(allowed_cpu_count(), hardware_cpu_count(), node.local_size());
    s->backend = make_backend(run.backend, device, threads);
    // Model collectives move device buffers: over NCCL, one communicator per tp / mp group of
    // more than one rank, bootstrapped over the group's host communicator.
    parallel::GroupCommunicators* model_comms = &s->comms;
    if (s->backend->device().kind != DeviceKind::kCpu && nccl) {
        auto device_comm =
            [&](parallel::Communicator& host) -> std::unique_ptr<parallel::Communicator> {
            if (host.size() == 1) {
                return std::make_unique<parallel::SelfCommunicator>(s->backend->device());
            }
            auto c = parallel::make_nccl_communicator(host, device);
            c->set_group_name(host.group_name());
            c->set_timeout(host.timeout());
            return c;
        };
        s->device_comms.tp = device_comm(*s->comms.tp);
        s->device_comms.mp = device_comm(*s->comms.mp);
        model_comms = &s->device_comms;
    }

    auto ckpt = Checkpoint::open(run.model);
    // The default precision follows the checkpoint's linear weights (q_proj of layer 0).
    const TensorRecord* q0 = ckpt->find("model.layers.0.self_attn.q_proj.weight");
    const Precision precision =
        run.precision.value_or(default_precision(q0 ? q0->dtype : DType::kF32));
    s->backend->set_precision(precision);
    // A model this node cannot hold is refused before anything is allocated: on the CPU every
    // rank of the node zero-fills its buffers in host memory, and a run that overcommits it
    // would be ended by the kernel's OOM killer without a message. (Device memory needs no
    // such check: an allocation that does not fit fails at once, with its own message.)
    if (s->backend->device().kind == DeviceKind::kCpu) {
        const DType weight_dtype = q0 ? q0->dtype : DType::kF32;
        const int64_t weight_bytes =
            precision == Precision::kFast ? 2 : static_cast<int64_t>(dtype_size(weight_dtype));
        const ModelFootprint footprint =
            model_footprint(mc, s->world.tp(), s->world.mp(), weight_bytes,
                            precision == Precision::kFast ? DType::kBF16 : DType::kF32);
        check_model_fits(mc, cfg_path, footprint, s->world.tp(), node.local_size(),
                         host_memory_bytes(), host_memory_source())
            .check();
    }
    ProgressLine load_progress("loading " + run.model, "layers", mc.num_hidden_layers,
                               s->is_root() && !run.quiet);
    ModelWeights weights =
        load_model_weights(*ckpt, mc, *s->backend, s->world.tp_rank(), s->world.tp(), precision,
                           /*zero_copy=*/true, [&](int64_t layers) { load_progress.update(layers); });
    load_progress.finish();
    ModelOptions mo;
    mo.precision = precision;
    mo.mem_dtype = run.memory.mem_dtype.value_or(mc.mem_dtype);
    mo.last_context_length = mc.last_context_length;
    mo.retrieval = run.memory.retrieval;
    mo.k = run.memory.k;
    mo.world_rank = s->world.rank();
    mo.mem_capacity_tokens = run.memory.capacity_tokens;
    if (run.memory.capacity_bytes > 0 && !mc.mem_layers.empty()) {
        const int64_t per_token = 2 * weights.heads * mc.head_dim() *
                                  static_cast<int64_t>(dtype_size(mo.mem_dtype)) *
                                  static_cast<int64_t>(mc.mem_layers.size());
        const int64_t by_bytes = run.memory.capacity_bytes / per_token;
        FOT_CHECK(by_bytes > 0, "memory.capacity_bytes=", run.memory.capacity_bytes,
                  " holds no memory token (one token needs ", per_token, " bytes per rank)");
        mo.mem_capacity_tokens =
            mo.mem_capacity_tokens > 0 ? std::min(mo.mem_capacity_tokens, by_bytes) : by_bytes;
    }
    const int64_t weight_bytes = weights.bytes;
    // The info-level load line: how long the weights took and at what rate, so a slow load
    // (cold cache, conversion) is visible without a profiler.
    {
        const double secs = weights.load_seconds;
        char rate[64];
        std::snprintf(rate, sizeof rate, "%.2f s (%.2f GB/s", secs,
                      secs > 0 ? static_cast<double>(weights.bytes) / 1e9 / secs : 0.0);
        FOT_LOG(kInfo) << "loaded weights: " << format_bytes(static_cast<double>(weights.bytes))
                       << " on this rank in " << rate << "; "
                       << format_bytes(static_cast<double>(weights.mapped_bytes))
                       << " used in place from the file mapping)";
    }
    s->model = std::make_unique<LongLlama>(mc, std::move(weights), *s->backend, *model_comms->tp,
                                           *model_comms->mp, mo);
    install_injected_fault(*s->model, s->world.rank());
    s->seq = std::make_unique<Sequence>(s->model->new_sequence());
    s->load_seconds = timer.seconds();
    FOT_LOG(kDebug) << "loaded " << run.model << " (" << ckpt->describe() << ", "
                    << weight_bytes / (1 << 20) << " MiB on this rank, precision "
                    << precision_name(precision) << ") in " << s->load_seconds << " s; "
                    << s->world.describe();
    return s;
}

Precision default_precision(DType linear_weight_dtype) {
    return linear_weight_dtype == DType::kBF16 || linear_weight_dtype == DType::kF16
               ? Precision::kFast
               : Precision::kExact;
}

std::vector<int32_t> read_ids_json(const std::string& path) {
    std::ifstream in(path);
    FOT_CHECK(in, "cannot open ids file ", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_ids_json(ss.str(), path);
}

void broadcast_ids(parallel::Communicator& comm, std::vector<int32_t>& ids) {
    if (comm.size() > 1) comm.broadcast_vector(ids, 0);
}

}  // namespace fot
