// HttpServer: the HTTP/1.1 front of `fotrt serve` (Boost.Beast over Boost.Asio).
//
// One thread accepts; each connection gets its own thread doing blocking reads and writes
// (simple to reason about, and the model thread is the bottleneck anyway); the number of
// connections is capped (over the cap: 503 and close). A connection thread parses a request,
// answers the cheap routes itself, and for a completion submits a Request to the Engine and
// waits for its tokens, writing them as server-sent events when streaming. While it waits it
// watches its socket: a client that closes the connection cancels its request, so the
// sequence is freed at the engine's next step.
//
// Routes: GET /health, GET /v1/models, GET /metrics, POST /v1/completions. Unknown path ->
// 404, known path with another method -> 405, body over the limit -> 413, unparsable HTTP ->
// 400, a request not received within the read timeout -> 408, bad JSON or fields -> 400
// (runtime/serve/api.h); all in the OpenAI error shape. With an API key every route but /health
// needs `Authorization: Bearer KEY` (else 401).
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/serve/api.h"
#include "runtime/serve/engine.h"
#include "runtime/serve/metrics.h"

namespace fot::serve {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8000;      // 0 = any free port (see HttpServer::port())
    std::string api_key;  // empty = no authentication
    int64_t max_body_bytes = 16 << 20;
    int64_t max_connections = 64;
    double idle_timeout_s = 60;  // a keep-alive connection idle this long is closed
    // A request's head and body must arrive within read_timeout_s of its first byte (else
    // 408 and close); each response write must be taken by the client within
    // write_timeout_s (else the connection is dropped, and a running request cancelled).
    double read_timeout_s = 30;
    double write_timeout_s = 30;
};

class HttpServer {
  public:
    // Binds and listens at once (throws fot::Error when it cannot); serving starts with start().
    HttpServer(Engine& engine, Metrics& metrics, ModelInfo model, ServerOptions options);
    ~HttpServer();  // stop()

    int port() const { return port_; }
    void start();
    // Stops accepting, lets every in-flight request finish (its client gets the answer),
    // closes idle connections and joins all threads. Call Engine::stop() after it.
    void stop();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    int port_ = 0;
};

}  // namespace fot::serve
