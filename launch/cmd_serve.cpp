// fotrt serve: the OpenAI-compatible HTTP server (runtime/serve/, docs/server.md).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/run_options.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/jobs/session.h"
#include "runtime/serve/engine.h"
#include "runtime/serve/http_server.h"

namespace fot::cli {

namespace {

struct ServeCommand {
    serve::ServerOptions server;
    serve::EngineOptions engine;
    int64_t max_tokens = 4096;
};

const OptionTable<ServeCommand>& serve_options() {
    static const OptionTable<ServeCommand> table = [] {
        OptionTable<ServeCommand> t;
        t.add(flag("host", "ADDR", "IP address to listen on (0.0.0.0 exposes the server)"),
              FOT_FIELD(server.host), text_value());
        t.add(flag("port", "PORT", "TCP port; 0 = any free port (printed on stdout)"),
              FOT_FIELD(server.port), integer<int>(0, 65535));
        t.add(flag("api-key", "KEY", "require 'Authorization: Bearer KEY' (all routes but /health)")
                  .default_is("none"),
              FOT_FIELD(server.api_key), text_value());
        t.add(flag("max-body-bytes", "N", "largest request body accepted (else 413)"),
              FOT_FIELD(server.max_body_bytes), integer<int64_t>(1));
        t.add(flag("max-connections", "N", "open connections served at once (else 503)"),
              FOT_FIELD(server.max_connections), integer<int64_t>(1));
        t.add(flag("idle-timeout", "SECONDS", "close a keep-alive connection idle this long"),
              FOT_FIELD(server.idle_timeout_s), real(0, 1e9, /*min_open=*/true));
        t.add(flag("read-timeout", "SECONDS",
                   "a request must arrive whole within this time of its first byte (else 408)"),
              FOT_FIELD(server.read_timeout_s), real(0, 1e9, /*min_open=*/true));
        t.add(flag("write-timeout", "SECONDS",
                   "drop a client that does not take a response write within this time"),
              FOT_FIELD(server.write_timeout_s), real(0, 1e9, /*min_open=*/true));
        t.add(flag("max-batch", "N", "most sequences advanced by one decode step"),
              FOT_FIELD(engine.max_batch), integer<int64_t>(1));
        t.add(flag("max-queue", "N", "requests waiting for a prefill before 503"),
              FOT_FIELD(engine.max_queue), integer<int64_t>(1));
        t.add(flag("max-tokens", "N", "largest max_tokens a request may ask for"),
              FOT_FIELD(max_tokens), integer<int64_t>(1));
        t.add(flag("max-sessions", "N", "memory sessions held at once (else 429)"),
              FOT_FIELD(engine.max_sessions), integer<int64_t>(0));
        t.add(
            flag("max-session-tokens", "N", "document tokens of all sessions together (else 429)"),
            FOT_FIELD(engine.max_session_tokens), integer<int64_t>(0));
        t.add(flag("session-idle-timeout", "SECONDS", "drop a session unused this long"),
              FOT_FIELD(engine.session_idle_timeout_s), real(0, 1e9, /*min_open=*/true));
        return t;
    }();
    return table;
}

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
    g_signal = sig;
}

}  // namespace

Args serve_args() {
    Args args("fotrt serve",
              "Serves the model over HTTP with an OpenAI-compatible API: POST /v1/completions\n"
              "(token-id or text prompts, streaming), GET /v1/models, /health, /metrics.\n"
              "Concurrent requests are decoded together, one batched step per token.\n"
              "Under mpirun (--tp/--mp, one group): rank 0 serves, the others follow it.\n"
              "SIGTERM or SIGINT: stop accepting, finish the running requests, exit 0.\n"
              "See docs/server.md.",
              {"fotrt serve --model M --port 8000",
               "fotrt serve --model M --port 0   # prints the port it listens on",
               "mpirun -np 2 fotrt serve --model M --tp 2 --port 8000",
               "curl -s localhost:8000/v1/completions -d '{\"prompt\": [1, 5, 9], "
               "\"max_tokens\": 8}'"});
    args.add(serve_options());
    add_run_options(args);
    return args;
}

int cmd_serve(const Argv& argv) {
    Args args = serve_args();
    if (!args.parse(argv)) return 0;
    ServeCommand cmd;
    args.apply(serve_options(), cmd);
    RunConfig run = resolve_run_config(args);

    auto world = parallel::make_world_communicator();
    auto session = open_session(run, *world);
    FOT_CHECK(session->world.dp() == 1, world->size(), " ranks with --tp ", session->world.tp(),
              " --mp ", session->world.mp(), " make ", session->world.dp(),
              " data-parallel groups, which serve does not support yet: set --tp x --mp to the "
              "number of ranks");

    if (!session->is_root()) {
        // A follower: the engine on rank 0 drives the model calls and says when to stop (it
        // drains first), so the signals mpirun forwards must not end this rank early.
        struct sigaction ign {};
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGTERM, &ign, nullptr);
        sigaction(SIGINT, &ign, nullptr);
        serve::follow(*session);
        return 0;
    }

    serve::ModelInfo info;
    info.name = std::filesystem::path(run.model).filename().string();
    if (info.name.empty()) info.name = std::filesystem::path(run.model).parent_path().filename();
    info.vocab_size = session->model_config.vocab_size;
    info.max_tokens_limit = cmd.max_tokens;
    if (std::filesystem::exists(std::filesystem::path(run.model) / "tokenizer.model")) {
        // The tokenizer is shared by the connection threads: one call at a time.
        auto mu = std::make_shared<std::mutex>();
        Tokenizer& tok = session->get_tokenizer();
        info.encode = [mu, &tok](const std::string& text) {
            std::lock_guard<std::mutex> l(*mu);
            return tok.encode(text, /*add_bos=*/true);
        };
        info.decode = [mu, &tok](const std::vector<int32_t>& ids) {
            std::lock_guard<std::mutex> l(*mu);
            return tok.decode(ids);
        };
    }

    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    // A client that vanishes mid-write must not kill the server.
    signal(SIGPIPE, SIG_IGN);

    serve::Metrics metrics;
    serve::Engine engine(*session, cmd.engine, metrics);
    serve::HttpServer server(engine, metrics, info, cmd.server);
    server.start();
    std::cout << "fotrt serve: listening on http://" << cmd.server.host << ":" << server.port()
              << std::endl;
    while (g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    FOT_LOG(kInfo) << "fotrt serve: signal " << g_signal.load()
                   << ": finishing the running requests";
    server.stop();
    engine.stop();
    std::cout << "fotrt serve: stopped" << std::endl;
    return 0;
}

}  // namespace fot::cli
