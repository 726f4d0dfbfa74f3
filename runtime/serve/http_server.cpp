#include "runtime/serve/http_server.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <sstream>

#include "runtime/core/logging.h"
#include "runtime/core/status.h"

namespace fot::serve {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Whether `fd` has data (or EOF) within `ms` milliseconds.
bool readable(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
}

// Whether the peer has closed its side: readable and a peek reads 0 bytes. Pipelined bytes
// (a next request) are left in the socket.
bool peer_closed(int fd) {
    if (!readable(fd, 0)) return false;
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

// The connection's socket seen through a deadline: Beast's synchronous reads and writes
// on it fail with `timed_out` when the peer does not send (or take) the bytes in time.
// (SO_RCVTIMEO does not work with Asio's blocking operations: they poll again without limit.)
class TimedSocket {
  public:
    TimedSocket(tcp::socket& socket, double seconds)
        : fd_(socket.native_handle()),
          deadline_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(seconds))) {}

    template <class Buffers>
    size_t read_some(const Buffers& buffers, boost::system::error_code& ec) {
        for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers);
             ++it) {
            const net::mutable_buffer b = *it;
            if (b.size() == 0) continue;
            for (;;) {
                if (!wait(POLLIN, ec)) return 0;
                const ssize_t n = ::recv(fd_, b.data(), b.size(), MSG_DONTWAIT);
                if (n > 0) return static_cast<size_t>(n);
                if (n == 0) {
                    ec = net::error::eof;
                    return 0;
                }
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    ec.assign(errno, boost::system::system_category());
                    return 0;
                }
            }
        }
        ec = {};
        return 0;
    }
    template <class Buffers>
    size_t write_some(const Buffers& buffers, boost::system::error_code& ec) {
        for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers);
             ++it) {
            const net::const_buffer b = *it;
            if (b.size() == 0) continue;
            for (;;) {
                if (!wait(POLLOUT, ec)) return 0;
                const ssize_t n = ::send(fd_, b.data(), b.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n >= 0) return static_cast<size_t>(n);
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    ec.assign(errno, boost::system::system_category());
                    return 0;
                }
            }
        }
        ec = {};
        return 0;
    }
    template <class Buffers>
    size_t read_some(const Buffers& buffers) {
        boost::system::error_code ec;
        const size_t n = read_some(buffers, ec);
        if (ec) throw boost::system::system_error(ec);
        return n;
    }
    template <class Buffers>
    size_t write_some(const Buffers& buffers) {
        boost::system::error_code ec;
        const size_t n = write_some(buffers, ec);
        if (ec) throw boost::system::system_error(ec);
        return n;
    }

  private:
    // Whether the socket became ready for `events` before the deadline (else ec = timed_out).
    bool wait(short events, boost::system::error_code& ec) {
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now())
                    .count();
            if (left <= 0) {
                ec = net::error::timed_out;
                return false;
            }
            pollfd p{fd_, events, 0};
            const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
            if (r > 0) return true;
            if (r < 0 && errno != EINTR) {
                ec.assign(errno, boost::system::system_category());
                return false;
            }
        }
    }

    int fd_;
    Clock::time_point deadline_;
};

std::string seconds(double s) {
    std::ostringstream o;
    o << s;
    return o.str();
}

const char* finish_reason(Request::Finish f) {
    switch (f) {
        case Request::Finish::kLength:
            return "length";
        case Request::Finish::kEos:
            return "stop";
        default:
            return nullptr;
    }
}

}  // namespace

struct HttpServer::Impl {
    Engine& engine;
    Metrics& metrics;
    ModelInfo model;
    ServerOptions opt;
    net::io_context io;
    tcp::acceptor acceptor{io};
    std::atomic<bool> stopping{false};
    std::atomic<int64_t> next_id{0};
    std::thread accept_thread;

    struct Conn {
        tcp::socket socket;
        std::thread thread;
        std::atomic<bool> done{false};
        explicit Conn(tcp::socket s) : socket(std::move(s)) {}
    };
    std::mutex conns_mu;
    std::list<std::unique_ptr<Conn>> conns;

    Impl(Engine& e, Metrics& m, ModelInfo mi, ServerOptions o)
        : engine(e), metrics(m), model(std::move(mi)), opt(std::move(o)) {}

    // ---- accepting ----------------------------------------------------------------------

    void accept_loop() {
        while (!stopping) {
            if (!readable(acceptor.native_handle(), 100)) {
                reap();
                continue;
            }
            boost::system::error_code ec;
            tcp::socket sock(io);
            acceptor.accept(sock, ec);
            if (ec) continue;
            reap();
            std::lock_guard<std::mutex> l(conns_mu);
            if (static_cast<int64_t>(conns.size()) >= opt.max_connections) {
                http::response<http::string_body> res{http::status::service_unavailable, 11};
                res.set(http::field::content_type, "application/json");
                res.body() = error_json(503, "too many connections", "server_overloaded");
                res.keep_alive(false);
                res.prepare_payload();
                http::write(sock, res, ec);
                sock.shutdown(tcp::socket::shutdown_both, ec);
                metrics.request_done(503);
                continue;
            }
            conns.push_back(std::make_unique<Conn>(std::move(sock)));
            Conn* c = conns.back().get();
            c->thread = std::thread([this, c] {
                try {
                    serve_connection(*c);
                } catch (const std::exception& e) {
                    FOT_LOG(kWarn) << "serve: connection: " << e.what();
                }
                // Under the lock: stop() may be shutting this socket down.
                std::lock_guard<std::mutex> l(conns_mu);
                boost::system::error_code ignored;
                c->socket.shutdown(tcp::socket::shutdown_both, ignored);
                c->socket.close(ignored);
                c->done = true;
            });
        }
    }

    // Joins the threads of finished connections.
    void reap() {
        std::lock_guard<std::mutex> l(conns_mu);
        for (auto it = conns.begin(); it != conns.end();) {
            if ((*it)->done) {
                (*it)->thread.join();
                it = conns.erase(it);
            } else {
                ++it;
            }
        }
    }

    // ---- one connection -------------------------------------------------------------------

    void serve_connection(Conn& c) {
        boost::beast::flat_buffer buf;
        const int fd = c.socket.native_handle();
        for (;;) {
            // Wait for the next request in slices so that stop() is seen; the idle timeout
            // frees connection slots held by silent clients.
            if (buf.size() == 0) {
                const auto start = Clock::now();
                bool ready = false;
                while (!stopping && !ready &&
                       std::chrono::duration<double>(Clock::now() - start).count() <
                           opt.idle_timeout_s) {
                    ready = readable(fd, 100);
                }
                if (!ready) return;
            }
            http::request_parser<http::string_body> parser;
            parser.body_limit(static_cast<std::uint64_t>(opt.max_body_bytes));
            boost::system::error_code ec;
            // The whole request (head and body) must arrive within the read timeout, so a
            // client that sends part of a request and stalls does not hold its slot.
            TimedSocket in(c.socket, opt.read_timeout_s);
            http::read(in, buf, parser, ec);
            if (ec == http::error::end_of_stream || ec == net::error::eof ||
                ec == net::error::connection_reset)
                return;
            if (ec == net::error::timed_out) {
                send(c, 408,
                     error_json(408,
                                "the request was not received within " +
                                    seconds(opt.read_timeout_s) + " s (--read-timeout)",
                                "request_timeout"),
                     false);
                return;
            }
            if (ec == http::error::body_limit) {
                send(c, 413,
                     error_json(413,
                                "the request body is larger than " +
                                    std::to_string(opt.max_body_bytes) + " bytes",
                                "request_too_large"),
                     false);
                linger(c);
                return;
            }
            if (ec) {
                send(c, 400,
                     error_json(400, "malformed HTTP request: " + ec.message(), "bad_request"),
                     false);
                linger(c);
                return;
            }
            const auto& req = parser.get();
            const bool keep = req.keep_alive() && !stopping;
            if (!handle(c, req, keep) || !keep) return;
        }
    }

    // After an error answered before the request was read whole: closing with unread bytes
    // would reset the connection and could destroy the answer in flight, so half-close and
    // discard what the client still sends (bounded in time).
    void linger(Conn& c) {
        boost::system::error_code ec;
        c.socket.shutdown(tcp::socket::shutdown_send, ec);
        const int fd = c.socket.native_handle();
        char buf[4096];
        const auto end = Clock::now() + std::chrono::seconds(2);
        while (Clock::now() < end && readable(fd, 100)) {
            if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
        }
    }

    // Writes a JSON (or text) response; returns whether the write succeeded.
    bool send(Conn& c, int status, const std::string& body, bool keep,
              const char* content_type = "application/json", const char* allow = nullptr) {
        http::response<http::string_body> res{static_cast<http::status>(status), 11};
        res.set(http::field::server, "fotrt");
        res.set(http::field::content_type, content_type);
        if (allow) res.set(http::field::allow, allow);
        res.keep_alive(keep);
        res.body() = body;
        res.prepare_payload();
        boost::system::error_code ec;
        TimedSocket out(c.socket, opt.write_timeout_s);
        http::write(out, res, ec);
        metrics.request_done(status);
        return !ec;
    }

    bool send_error(Conn& c, const ApiError& e, bool keep, const char* allow = nullptr) {
        return send(c, e.status, e.body().dump(), keep, "application/json", allow);
    }

    // Returns false when the connection must close.
    bool handle(Conn& c, const http::request<http::string_body>& req, bool keep) {
        const std::string target(req.target());
        const std::string path = target.substr(0, target.find('?'));
        const auto method = req.method();
        try {
            auto only = [&](http::verb v, const char* name) {
                if (method != v)
                    throw ApiError(405, "use " + std::string(name) + " for " + path, "",
                                   "method_not_allowed");
            };
            if (path == "/health") {
                only(http::verb::get, "GET");
                return send(c, 200, R"({"status":"ok"})", keep);
            }
            const std::string sessions = "/v1/sessions";
            const bool session_path =
                path.rfind(sessions + "/", 0) == 0 && path.size() > sessions.size() + 1;
            const bool routed = path == "/v1/models" || path == "/metrics" ||
                                path == "/v1/completions" || path == sessions || session_path;
            if (!routed) throw ApiError(404, "no route " + path, "", "not_found");
            check_auth(req);
            if (path == sessions) {
                only(http::verb::post, "POST");
                SessionResult r = engine.create_session(parse_session_request(req.body(), model));
                if (r.status != 200) {
                    throw ApiError(r.status, r.error, "",
                                   r.status == 429 ? "session_limit" : "session_failed",
                                   r.status == 429 ? "insufficient_capacity" : "server_error");
                }
                return send(c, 200, session_json(r.info).dump(), keep);
            }
            if (session_path) {
                const std::string id = path.substr(sessions.size() + 1);
                if (method == http::verb::delete_) {
                    if (!engine.delete_session(id)) throw no_session(id);
                    return send(c, 200,
                                json{{"id", id}, {"object", "session"}, {"deleted", true}}.dump(),
                                keep);
                }
                only(http::verb::get, "GET or DELETE");
                auto info = engine.session(id);
                if (!info) throw no_session(id);
                return send(c, 200, session_json(*info).dump(), keep);
            }
            if (path == "/v1/models") {
                only(http::verb::get, "GET");
                json m{
                    {"id", model.name}, {"object", "model"}, {"created", 0}, {"owned_by", "fotrt"}};
                return send(c, 200, json{{"object", "list"}, {"data", json::array({m})}}.dump(),
                            keep);
            }
            if (path == "/metrics") {
                only(http::verb::get, "GET");
                return send(c, 200, metrics.render(), keep, "text/plain; version=0.0.4");
            }
            only(http::verb::post, "POST");
            return complete(c, req.body(), keep);
        } catch (const ApiError& e) {
            const char* allow = nullptr;
            if (e.status == 405) {
                if (path == "/v1/completions" || path == "/v1/sessions")
                    allow = "POST";
                else if (path.rfind("/v1/sessions/", 0) == 0)
                    allow = "GET, DELETE";
                else
                    allow = "GET";
            }
            return send_error(c, e, keep, allow);
        } catch (const std::exception& e) {
            return send(c, 500, error_json(500, e.what(), "internal_error"), false);
        }
    }

    static ApiError no_session(const std::string& id) {
        return ApiError(404, "no session '" + id + "' (it may have expired)", "session",
                        "session_not_found");
    }

    static json session_json(const SessionInfo& i) {
        return json{{"id", i.id},
                    {"object", "session"},
                    {"prompt_tokens", i.prompt_tokens},
                    {"memory_tokens", i.memory_tokens},
                    {"bytes", i.bytes},
                    {"prefills", i.prefills},
                    {"uses", i.uses},
                    {"idle_seconds", i.idle_seconds}};
    }

    void check_auth(const http::request<http::string_body>& req) const {
        if (opt.api_key.empty()) return;
        const auto it = req.find(http::field::authorization);
        if (it == req.end() || std::string(it->value()) != "Bearer " + opt.api_key)
            throw ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)", "",
                           "invalid_api_key", "authentication_error");
    }

    // ---- completions ----------------------------------------------------------------------

    std::string text_of(const std::vector<int32_t>& ids) const {
        return model.decode ? model.decode(ids) : std::string();
    }

    json logprobs_json(const std::vector<TokenOut>& toks) const {
        json tokens = json::array(), lps = json::array(), tops = json::array();
        for (const TokenOut& t : toks) {
            auto name = [&](int32_t id) {
                return model.decode ? model.decode({id}) : std::to_string(id);
            };
            tokens.push_back(name(t.id));
            lps.push_back(t.logprob);
            json top = json::object();
            for (const auto& [id, lp] : t.top) top[name(id)] = lp;
            tops.push_back(top);
        }
        return json{{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}};
    }

    bool complete(Conn& c, const std::string& body, bool keep) {
        CompletionRequest r = parse_completion_request(body, model);
        if (!r.params.session.empty() && !engine.session(r.params.session))
            throw no_session(r.params.session);
        const std::string id = "cmpl-" + std::to_string(next_id++);
        const int64_t created = static_cast<int64_t>(std::time(nullptr));
        std::shared_ptr<Request> q = engine.submit(r.params);
        if (!q)
            throw ApiError(503, "the server is overloaded or stopping; retry later", "",
                           "server_overloaded", "server_error");
        const int fd = c.socket.native_handle();
        auto chunk = [&](const json& choice) {
            return json{{"id", id},
                        {"object", "text_completion"},
                        {"created", created},
                        {"model", model.name},
                        {"choices", json::array({choice})}};
        };

        bool streaming_started = false, write_failed = false;
        auto write_raw = [&](const std::string& s) {
            // A client that stops reading is dropped after the write timeout.
            boost::system::error_code ec;
            TimedSocket out(c.socket, opt.write_timeout_s);
            net::write(out, net::buffer(s), ec);
            if (ec) write_failed = true;
        };
        if (r.stream) {
            // Server-sent events, the body delimited by closing the connection.
            http::response<http::empty_body> res{http::status::ok, 11};
            res.set(http::field::server, "fotrt");
            res.set(http::field::content_type, "text/event-stream");
            res.set(http::field::cache_control, "no-cache");
            res.keep_alive(false);
            http::response_serializer<http::empty_body> sr{res};
            boost::system::error_code ec;
            TimedSocket out(c.socket, opt.write_timeout_s);
            http::write_header(out, sr, ec);
            if (ec) write_failed = true;
            streaming_started = true;
        }

        std::vector<TokenOut> toks;
        std::string error, printed;
        size_t seen = 0;
        bool stopped_by_string = false;
        Request::Finish f = Request::Finish::kNone;
        while (true) {
            f = q->wait(seen, std::chrono::milliseconds(50), &toks, &error);
            // Stop strings cut the output at their first occurrence and end the request.
            size_t take = toks.size();
            std::string text;
            if (model.decode && !stopped_by_string) {
                std::vector<int32_t> ids;
                for (size_t i = 0; i < take; ++i) ids.push_back(toks[i].id);
                text = model.decode(ids);
                size_t cut = std::string::npos;
                for (const std::string& s : r.stop) cut = std::min(cut, text.find(s));
                if (cut != std::string::npos) {
                    text.resize(cut);
                    stopped_by_string = true;
                    q->cancel = true;
                }
            }
            if (r.stream && !write_failed) {
                for (size_t i = seen; i < take; ++i) {
                    std::string delta;
                    if (model.decode) {
                        // Only the last event of this batch carries the text so far.
                        if (i + 1 == take && text.size() >= printed.size()) {
                            delta = text.substr(printed.size());
                            printed = text;
                        }
                    }
                    json choice{{"index", 0},
                                {"text", delta},
                                {"token_ids", {toks[i].id}},
                                {"logprobs", r.logprobs ? logprobs_json({toks[i]}) : json(nullptr)},
                                {"finish_reason", nullptr}};
                    write_raw("data: " + chunk(choice).dump() + "\n\n");
                }
            }
            seen = take;
            if (write_failed) q->cancel = true;  // the client is gone
            if (stopped_by_string) toks.resize(seen);
            if (f != Request::Finish::kNone || stopped_by_string) break;
            if (!stopping && !q->cancel && peer_closed(fd)) q->cancel = true;
        }
        if (stopped_by_string) {
            // Wait for the engine to drop the sequence so that counters stay exact.
            std::vector<TokenOut> ignored;
            while (q->wait(SIZE_MAX, std::chrono::milliseconds(50), &ignored, nullptr) ==
                   Request::Finish::kNone) {
            }
        }
        const int64_t n_prompt = static_cast<int64_t>(r.params.prompt.size());
        const int64_t n_out = static_cast<int64_t>(toks.size());
        json usage{{"prompt_tokens", n_prompt},
                   {"completion_tokens", n_out},
                   {"total_tokens", n_prompt + n_out}};
        if (f == Request::Finish::kCancelled && !stopped_by_string) {
            metrics.request_done(499);  // client closed the request (nginx's code)
            return false;
        }
        if (f == Request::Finish::kError) {
            if (streaming_started) {
                write_raw(
                    "data: " +
                    ApiError(500, error, "", "generation_failed", "server_error").body().dump() +
                    "\n\n");
                metrics.request_done(500);
                return false;
            }
            return send(c, 500, error_json(500, error, "generation_failed"), false);
        }
        const char* reason = stopped_by_string ? "stop" : finish_reason(f);
        std::vector<int32_t> ids;
        for (const TokenOut& t : toks) ids.push_back(t.id);
        if (r.stream) {
            json last{{"index", 0},
                      {"text", ""},
                      {"token_ids", json::array()},
                      {"logprobs", nullptr},
                      {"finish_reason", reason}};
            json j = chunk(last);
            j["usage"] = usage;
            write_raw("data: " + j.dump() + "\n\ndata: [DONE]\n\n");
            metrics.request_done(write_failed ? 499 : 200);
            return false;
        }
        std::string text = text_of(ids);
        if (stopped_by_string) {
            size_t cut = std::string::npos;
            for (const std::string& s : r.stop) cut = std::min(cut, text.find(s));
            if (cut != std::string::npos) text.resize(cut);
        }
        json choice{{"index", 0},
                    {"text", r.echo ? text_of(r.params.prompt) + text : text},
                    {"token_ids", ids},
                    {"logprobs", r.logprobs ? logprobs_json(toks) : json(nullptr)},
                    {"finish_reason", reason}};
        if (r.echo) choice["prompt_token_ids"] = r.params.prompt;
        json out = chunk(choice);
        out["usage"] = usage;
        return send(c, 200, out.dump(), keep);
    }
};

HttpServer::HttpServer(Engine& engine, Metrics& metrics, ModelInfo model, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, metrics, std::move(model), std::move(options))) {
    boost::system::error_code ec;
    const auto addr = net::ip::make_address(impl_->opt.host, ec);
    FOT_CHECK(!ec, "--host '", impl_->opt.host, "' is not an IP address");
    const tcp::endpoint ep(addr, static_cast<unsigned short>(impl_->opt.port));
    auto& a = impl_->acceptor;
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
    FOT_CHECK(!ec, "cannot listen on ", impl_->opt.host, ":", impl_->opt.port, ": ", ec.message());
    port_ = a.local_endpoint().port();
}

HttpServer::~HttpServer() {
    stop();
}

void HttpServer::start() {
    impl_->accept_thread = std::thread([this] { impl_->accept_loop(); });
}

void HttpServer::stop() {
    if (!impl_ || impl_->stopping.exchange(true)) return;
    if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    // Connection threads see `stopping`: idle ones return at once, busy ones after their
    // response (the engine keeps running until Engine::stop()).
    std::list<std::unique_ptr<Impl::Conn>> conns;
    {
        std::lock_guard<std::mutex> l(impl_->conns_mu);
        // Shutting down the receiving side ends reads that would otherwise wait for a slow
        // client (a request half sent); responses still go out.
        for (auto& c : impl_->conns) {
            if (!c->done) ::shutdown(c->socket.native_handle(), SHUT_RD);
        }
        conns.swap(impl_->conns);
    }
    for (auto& c : conns) c->thread.join();
}

}  // namespace fot::serve
