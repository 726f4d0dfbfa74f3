// Serving benchmark ([F11]): throughput and latency of `fotrt serve`'s engine and HTTP server
// under 1, 8, 32 ... concurrent streaming clients, over real HTTP on loopback.
//
//   fot_serve_bench --model DIR [--clients 1,8,32] [--requests 4] [--prompt-tokens 64]
//                   [--max-tokens 32] [--threads N]
// Each level starts the given number of clients at once; each sends --requests streaming
// completions one after another (greedy, ignore_eos, so every request yields --max-tokens
// tokens). A token's time is when its server-sent event arrives. Printed per level:
// generated tokens/s over the level's wall time, time to first token (TTFT) and per-token
// latency (per request, the mean gap between its tokens after the first: TPOT) at p50 and
// p99 over the requests, and the largest decode batch the engine ran so far. The server runs in
// this process (an Engine and an HttpServer, as `fotrt serve` builds them); prompts are token ids,
// so any model works.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "launch/args.h"
#include "parallel/self_communicator.h"
#include "runtime/core/status.h"
#include "runtime/jobs/session.h"
#include "runtime/serve/engine.h"
#include "runtime/serve/http_server.h"
#include "tests/serve/http_client.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct BenchOptions {
    std::string model;
    std::vector<int64_t> clients = {1, 8, 32};
    int64_t requests = 4;
    int64_t prompt_tokens = 64;
    int64_t max_tokens = 32;
    int64_t threads = 0;
};

const fot::OptionTable<BenchOptions>& bench_options() {
    using namespace fot;
    static const OptionTable<BenchOptions> table = [] {
        OptionTable<BenchOptions> t;
        t.add(flag("model", "DIR", "model directory (config.json + safetensors); required"),
              FOT_FIELD(model), text_value());
        t.add(flag("clients", "N,N", "concurrent clients of each level"), FOT_FIELD(clients),
              list_of(count(1), "1,8,32"));
        t.add(flag("requests", "N", "streaming requests per client, one after another"),
              FOT_FIELD(requests), integer<int64_t>(1));
        t.add(flag("prompt-tokens", "N", "prompt length (token ids)"), FOT_FIELD(prompt_tokens),
              integer<int64_t>(1));
        t.add(flag("max-tokens", "N", "tokens generated per request"), FOT_FIELD(max_tokens),
              integer<int64_t>(1));
        t.add(flag("threads", "N", "CPU threads of the model (0 = the default)"),
              FOT_FIELD(threads), integer<int64_t>(0));
        return t;
    }();
    return table;
}

// One streaming completion: the arrival time of each token's event.
struct Timed {
    Clock::time_point sent;
    std::vector<Clock::time_point> tokens;
    bool ok = false;
};

Timed stream_once(int port, const json& body) {
    Timed t;
    const int fd = fot::testing::connect_loopback(port);
    t.sent = Clock::now();
    fot::testing::send_all(fd, fot::testing::request_text("POST", "/v1/completions", body.dump()));
    std::string got;
    size_t parsed = 0;
    char buf[65536];
    bool done = false;
    while (!done) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 120000) <= 0) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        const auto now = Clock::now();
        got.append(buf, static_cast<size_t>(n));
        if (parsed == 0) {
            const size_t head = got.find("\r\n\r\n");
            if (head == std::string::npos) continue;
            if (got.rfind("HTTP/1.1 200", 0) != 0) break;
            parsed = head + 4;
        }
        for (size_t end; (end = got.find("\n\n", parsed)) != std::string::npos;) {
            const std::string ev = got.substr(parsed, end - parsed);
            parsed = end + 2;
            if (ev == "data: [DONE]") {
                done = true;
                break;
            }
            if (ev.rfind("data: ", 0) != 0) continue;
            const json j = json::parse(ev.substr(6));
            const size_t k = j["choices"][0]["token_ids"].size();
            for (size_t i = 0; i < k; ++i) t.tokens.push_back(now);
        }
    }
    ::close(fd);
    t.ok = done;
    return t;
}

double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
    return v[i];
}

}  // namespace

int main(int argc, char** argv) {
    using namespace fot;
    try {
        cli::Args args("fot_serve_bench",
                       "Tokens/s, time to first token and per-token latency of the server\n"
                       "under concurrent streaming clients (loopback HTTP, in-process server).",
                       {"fot_serve_bench --model tests/data/golden/case_a",
                        "fot_serve_bench --model /models/long_llama_3b_v1_1 --clients 1,8 "
                        "--prompt-tokens 2048 --max-tokens 64"});
        args.add(bench_options());
        if (!args.parse(std::vector<std::string>(argv + 1, argv + argc))) return 0;
        BenchOptions b;
        args.apply(bench_options(), b);
        FOT_CHECK(!b.model.empty(), "--model DIR is required (a model directory)");

        RunConfig run;
        run.model = b.model;
        run.threads = b.threads;
        parallel::SelfCommunicator world;
        auto session = open_session(run, world);
        const int64_t V = session->model_config.vocab_size;
        int64_t max_clients = 1;
        for (int64_t c : b.clients) max_clients = std::max(max_clients, c);

        serve::Metrics metrics;
        serve::EngineOptions eo;
        eo.max_batch = max_clients;
        eo.max_queue = max_clients * 2;
        serve::Engine engine(*session, eo, metrics);
        serve::ServerOptions so;
        so.port = 0;
        so.max_connections = max_clients + 8;
        serve::ModelInfo info;
        info.name = std::filesystem::path(b.model).filename().string();
        info.vocab_size = V;
        info.max_tokens_limit = b.max_tokens;
        serve::HttpServer server(engine, metrics, info, so);
        server.start();

        std::printf(
            "fot_serve_bench: model %s, prompt %lld tokens, %lld tokens per request, "
            "%lld requests per client, decode batch <= %lld\n",
            info.name.c_str(), static_cast<long long>(b.prompt_tokens),
            static_cast<long long>(b.max_tokens), static_cast<long long>(b.requests),
            static_cast<long long>(
                std::min<int64_t>(eo.max_batch, session->model_config.max_position_embeddings)));
        std::printf("%8s %9s %8s %8s %10s %12s %12s %12s %12s %9s\n", "clients", "requests",
                    "tokens", "wall s", "tokens/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms",
                    "TPOT p99 ms", "max batch");
        int failed = 0;
        for (int64_t C : b.clients) {
            std::vector<std::vector<Timed>> per(static_cast<size_t>(C));
            std::vector<std::thread> threads;
            const auto start = Clock::now();
            for (int64_t c = 0; c < C; ++c) {
                threads.emplace_back([&, c] {
                    for (int64_t r = 0; r < b.requests; ++r) {
                        // Distinct prompts, so no two requests share work.
                        std::vector<int32_t> prompt(static_cast<size_t>(b.prompt_tokens));
                        for (size_t i = 0; i < prompt.size(); ++i)
                            prompt[i] = static_cast<int32_t>(
                                (1 + c * 131 + r * 17 + static_cast<int64_t>(i) * 7) % V);
                        json body{{"prompt", prompt},
                                  {"max_tokens", b.max_tokens},
                                  {"ignore_eos", true},
                                  {"stream", true}};
                        per[static_cast<size_t>(c)].push_back(stream_once(server.port(), body));
                    }
                });
            }
            for (auto& t : threads) t.join();
            const double wall = std::chrono::duration<double>(Clock::now() - start).count();
            std::vector<double> ttft, gaps;
            int64_t tokens = 0, requests = 0;
            for (const auto& reqs : per) {
                for (const Timed& t : reqs) {
                    ++requests;
                    if (!t.ok || t.tokens.empty()) {
                        ++failed;
                        continue;
                    }
                    tokens += static_cast<int64_t>(t.tokens.size());
                    ttft.push_back(std::chrono::duration<double>(t.tokens[0] - t.sent).count());
                    // Per request, the mean gap between tokens (TPOT): the events of one
                    // stream often arrive several per read, so single gaps say little.
                    if (t.tokens.size() > 1)
                        gaps.push_back(
                            std::chrono::duration<double>(t.tokens.back() - t.tokens[0]).count() /
                            static_cast<double>(t.tokens.size() - 1));
                }
            }
            std::printf("%8lld %9lld %8lld %8.2f %10.1f %12.1f %12.1f %12.2f %12.2f %9lld\n",
                        static_cast<long long>(C), static_cast<long long>(requests),
                        static_cast<long long>(tokens), wall, static_cast<double>(tokens) / wall,
                        1e3 * percentile(ttft, 0.5), 1e3 * percentile(ttft, 0.99),
                        1e3 * percentile(gaps, 0.5), 1e3 * percentile(gaps, 0.99),
                        static_cast<long long>(metrics.max_sequences_per_step()));
            std::fflush(stdout);
        }
        server.stop();
        engine.stop();
        if (failed > 0) {
            std::fprintf(stderr, "fot_serve_bench: %d requests failed\n", failed);
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fot_serve_bench: %s\n", e.what());
        return 1;
    }
}
