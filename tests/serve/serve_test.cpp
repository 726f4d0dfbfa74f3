// The server over real HTTP on loopback: an Engine and an HttpServer on a golden model in
// this process (port 0), driven by a socket client (tests/serve/http_client.h).
//  - completions equal the reference greedy tokens (greedy.json, what `fotrt generate` gives);
//  - streaming yields the same tokens; logprobs and echo have their shape;
//  - >= 20 malformed requests each get their 4xx in the OpenAI error shape, and the server
//    still answers /health;
//  - concurrent clients get their serial results while decode steps batch > 1 sequence;
//    32 clients x 8 requests at once get theirs (greedy);
//  - a client that disconnects mid-stream frees its sequence;
//  - a memory session answers questions from its document, prefilled once;
//  - a client that sends part of a request and stalls gets 408 after the read timeout;
//  - a long prefill (a prompt or a session's document) advances one window per engine
//    iteration, with a decode step of the running requests between its windows.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/serve/engine.h"
#include "runtime/serve/http_server.h"
#include "tests/model/golden_checks.h"
#include "tests/serve/http_client.h"

namespace fot {
namespace {

using nlohmann::json;
using testing::http;
using testing::HttpResponse;

struct Served {
    std::unique_ptr<testing::LoadedModel> model;
    serve::Metrics metrics;
    std::unique_ptr<serve::Engine> engine;
    std::unique_ptr<serve::HttpServer> server;
    int port = 0;

    explicit Served(const std::string& golden, serve::ServerOptions so = {},
                    serve::EngineOptions eo = {}, RunConfig run = {}) {
        model = testing::open_golden_model(testing::golden_dir(golden), run);
        engine = std::make_unique<serve::Engine>(*model->session, eo, metrics);
        serve::ModelInfo info;
        info.name = golden;
        info.vocab_size = model->session->model_config.vocab_size;
        info.max_tokens_limit = 50000;
        so.port = 0;
        server = std::make_unique<serve::HttpServer>(*engine, metrics, info, so);
        port = server->port();
        server->start();
    }
    ~Served() {
        server->stop();
        engine->stop();
    }
    HttpResponse complete(const json& body) {
        return http(port, "POST", "/v1/completions", body.dump());
    }
};

json reference(const std::string& golden) {
    return testing::read_json(testing::golden_dir(golden) + "/greedy.json");
}
std::vector<int32_t> prompt_of(const std::string& golden) {
    return testing::read_ids(testing::golden_dir(golden) + "/input_ids.json");
}

// The token ids of an SSE body, checking its framing: one chunk per token, a final chunk
// with the finish reason, then [DONE].
std::vector<int32_t> streamed_ids(const std::string& body, std::string* finish) {
    std::vector<int32_t> ids;
    const auto events = testing::sse_data(body);
    EXPECT_GE(events.size(), 2u);
    if (events.size() < 2) return ids;
    EXPECT_EQ(events.back(), "[DONE]");
    for (size_t i = 0; i + 1 < events.size(); ++i) {
        json j = json::parse(events[i]);
        EXPECT_EQ(j["object"], "text_completion");
        const json& c = j["choices"][0];
        for (const auto& t : c["token_ids"]) ids.push_back(t.get<int32_t>());
        if (i + 2 < events.size())
            EXPECT_TRUE(c["finish_reason"].is_null());
        else
            *finish = c["finish_reason"].get<std::string>();
    }
    return ids;
}

class ServeGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(ServeGolden, CompletionsEqualGenerateAndStreamingEqualsThem) {
    Served s(GetParam());
    const json ref = reference(GetParam());
    json body{{"model", GetParam()},
              {"prompt", prompt_of(GetParam())},
              {"max_tokens", 16},
              {"ignore_eos", true}};
    HttpResponse r = s.complete(body);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.json();
    EXPECT_EQ(j["choices"][0]["token_ids"], ref["new_tokens"]);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["completion_tokens"], 16);
    EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_of(GetParam()).size());

    body["stream"] = true;
    r = s.complete(body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.head.find("text/event-stream"), std::string::npos);
    std::string finish;
    EXPECT_EQ(json(streamed_ids(r.body, &finish)), ref["new_tokens"]);
    EXPECT_EQ(finish, "length");
}

INSTANTIATE_TEST_SUITE_P(Golden, ServeGolden, ::testing::Values("case_a", "case_e", "case_f"));

TEST(Serve, HealthModelsMetricsLogprobsEcho) {
    Served s("case_a");
    HttpResponse r = http(s.port, "GET", "/health");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.json()["status"], "ok");
    r = http(s.port, "GET", "/v1/models");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.json()["data"][0]["id"], "case_a");

    const auto prompt = prompt_of("case_a");
    r = s.complete({{"prompt", prompt},
                    {"max_tokens", 4},
                    {"logprobs", 2},
                    {"echo", true},
                    {"ignore_eos", true}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json c = r.json()["choices"][0];
    EXPECT_EQ(c["prompt_token_ids"], json(prompt));
    ASSERT_EQ(c["token_ids"].size(), 4u);
    ASSERT_EQ(c["logprobs"]["token_logprobs"].size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
        const json& top = c["logprobs"]["top_logprobs"][i];
        ASSERT_EQ(top.size(), 2u);
        // Greedy: the chosen token is the most likely one, with its log-probability.
        const std::string chosen = std::to_string(c["token_ids"][i].get<int>());
        ASSERT_TRUE(top.contains(chosen)) << top;
        const double lp = c["logprobs"]["token_logprobs"][i];
        EXPECT_DOUBLE_EQ(top[chosen].get<double>(), lp);
        EXPECT_LT(lp, 0.0);
        for (const auto& [k, v] : top.items()) EXPECT_LE(v.get<double>(), lp);
    }

    r = http(s.port, "GET", "/metrics");
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("fotrt_requests_total{code=\"200\"} 3"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("fotrt_generation_tokens_total 4"), std::string::npos);
    EXPECT_NE(r.body.find("fotrt_prompt_tokens_total " + std::to_string(prompt.size())),
              std::string::npos);
    EXPECT_NE(r.body.find("fotrt_time_to_first_token_seconds_count 1"), std::string::npos);
    EXPECT_NE(r.body.find("fotrt_time_per_output_token_seconds_count 3"), std::string::npos);
}

struct Bad {
    const char* what;
    std::string raw;  // the whole request
    int status;
    const char* code;  // error.code, "" = not checked (HTTP-level errors)
};

TEST(Serve, MalformedRequestsGet4xxAndTheServerKeepsServing) {
    serve::ServerOptions so;
    so.max_body_bytes = 4096;
    Served s("case_a", so);
    using testing::request_text;
    auto post = [](const std::string& body) {
        return request_text("POST", "/v1/completions", body);
    };
    const std::vector<Bad> table = {
        {"not json", post("{\"prompt\": [1, 2"), 400, "invalid_json"},
        {"json array", post("[1, 2, 3]"), 400, "invalid_type"},
        {"json string", post("\"hello\""), 400, "invalid_type"},
        {"no prompt", post(R"({"max_tokens": 4})"), 400, "missing_required_parameter"},
        {"prompt number", post(R"({"prompt": 5})"), 400, "invalid_type"},
        {"prompt object", post(R"({"prompt": {"a": 1}})"), 400, "invalid_type"},
        {"empty prompt", post(R"({"prompt": []})"), 400, "invalid_value"},
        {"id too large", post(R"({"prompt": [1, 256]})"), 400, "invalid_value"},
        {"negative id", post(R"({"prompt": [1, -3]})"), 400, "invalid_value"},
        {"float id", post(R"({"prompt": [1, 2.5]})"), 400, "invalid_type"},
        {"text without tokenizer", post(R"({"prompt": "hello"})"), 400, "tokenizer_unavailable"},
        {"two prompts", post(R"({"prompt": [[1, 2], [3]]})"), 400, "invalid_value"},
        {"max_tokens string", post(R"({"prompt": [1], "max_tokens": "8"})"), 400, "invalid_type"},
        {"max_tokens 0", post(R"({"prompt": [1], "max_tokens": 0})"), 400, "invalid_value"},
        {"max_tokens over limit", post(R"({"prompt": [1], "max_tokens": 100000})"), 400,
         "invalid_value"},
        {"temperature negative", post(R"({"prompt": [1], "temperature": -1})"), 400,
         "invalid_value"},
        {"top_p 0", post(R"({"prompt": [1], "top_p": 0})"), 400, "invalid_value"},
        {"seed negative", post(R"({"prompt": [1], "seed": -1})"), 400, "invalid_value"},
        {"stream string", post(R"({"prompt": [1], "stream": "yes"})"), 400, "invalid_type"},
        {"stop number", post(R"({"prompt": [1], "stop": 3})"), 400, "invalid_type"},
        {"logprobs 9", post(R"({"prompt": [1], "logprobs": 9})"), 400, "invalid_value"},
        {"n 2", post(R"({"prompt": [1], "n": 2})"), 400, "invalid_value"},
        {"unknown field", post(R"({"prompt": [1], "frobnicate": 1})"), 400, "unknown_parameter"},
        {"penalty", post(R"({"prompt": [1], "presence_penalty": 1})"), 400, "unsupported_value"},
        {"wrong model", post(R"({"prompt": [1], "model": "gpt-4"})"), 404, "model_not_found"},
        {"unknown route", request_text("GET", "/v1/nothing"), 404, "not_found"},
        {"GET completions", request_text("GET", "/v1/completions"), 405, "method_not_allowed"},
        {"POST health", request_text("POST", "/health", "{}"), 405, "method_not_allowed"},
        {"body too large", post("{\"prompt\": [" + std::string(5000, ' ') + "1]}"), 413,
         "request_too_large"},
        {"garbage HTTP", "HELLO THERE\r\n\r\n", 400, ""},
    };
    ASSERT_GE(table.size(), 20u);
    for (const Bad& b : table) {
        SCOPED_TRACE(b.what);
        HttpResponse r = testing::http_raw(s.port, b.raw);
        EXPECT_EQ(r.status, b.status) << r.head << "\n" << r.body;
        if (*b.code) {
            ASSERT_NO_THROW(r.json()) << r.body;
            const json e = r.json()["error"];
            EXPECT_EQ(e["code"], b.code) << r.body;
            EXPECT_TRUE(e["message"].is_string());
            EXPECT_TRUE(e.contains("type") && e.contains("param"));
        }
        EXPECT_EQ(http(s.port, "GET", "/health").status, 200);
    }
    // After all that, a good request still gets its tokens.
    HttpResponse r =
        s.complete({{"prompt", prompt_of("case_a")}, {"max_tokens", 16}, {"ignore_eos", true}});
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.json()["choices"][0]["token_ids"], reference("case_a")["new_tokens"]);
}

// Sampling follows `fotrt generate`: the same temperature, top_p and seed give the tokens
// run_generate_job gives (its sampler is seeded the same way).
TEST(Serve, SampledCompletionEqualsGenerateJob) {
    Served s("case_a");
    const auto prompt = prompt_of("case_a");
    auto other = testing::open_golden_model(testing::golden_dir("case_a"));
    for (uint64_t seed : {1u, 7u}) {
        GenerateOptions go;
        go.max_new_tokens = 12;
        go.ignore_eos = true;
        go.sampling.temperature = 0.8;
        go.sampling.top_p = 0.95;
        go.sampling.seed = seed;
        const GenerateResult ref = run_generate_job(*other->session, prompt, go);
        HttpResponse r = s.complete({{"prompt", prompt},
                                     {"max_tokens", 12},
                                     {"ignore_eos", true},
                                     {"temperature", 0.8},
                                     {"top_p", 0.95},
                                     {"seed", seed}});
        ASSERT_EQ(r.status, 200) << r.body;
        EXPECT_EQ(r.json()["choices"][0]["token_ids"], json(ref.new_tokens)) << "seed " << seed;
    }
}

// Two requests on one keep-alive connection, answered in order.
TEST(Serve, KeepAliveConnectionServesSeveralRequests) {
    Served s("case_a");
    const int fd = testing::connect_loopback(s.port);
    const std::string body = json{{"prompt", {1, 5, 9}}, {"max_tokens", 3}}.dump();
    std::string req =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    testing::send_all(fd, req + req + testing::request_text("GET", "/health"));
    const std::string all = testing::read_all(fd, 30000);
    ::close(fd);
    size_t n = 0;
    for (size_t at = all.find("HTTP/1.1 200"); at != std::string::npos;
         at = all.find("HTTP/1.1 200", at + 1))
        ++n;
    EXPECT_EQ(n, 3u) << all;
    EXPECT_NE(all.find(R"({"status":"ok"})"), std::string::npos);
}

// The greedy tokens of the document and the question fed as two model calls on one
// sequence: what a session completion computes, without the server.
std::vector<int32_t> two_call_greedy(Session& s, const std::vector<int32_t>& doc,
                                     const std::vector<int32_t>& question, int n) {
    Sequence seq = s.model->new_sequence();
    s.model->forward(seq, doc, ForwardOptions{});
    std::vector<float> row;
    ForwardOptions fo;
    fo.logits = LogitsRows::kLast;
    fo.on_logits = [&](int64_t, TensorView v) { row = s.gather_vocab(v); };
    std::vector<int32_t> feed = question, out;
    for (int i = 0; i < n; ++i) {
        s.model->forward(seq, feed, fo);
        out.push_back(argmax(row.data(), static_cast<int64_t>(row.size())));
        feed.assign(1, out.back());
    }
    return out;
}

TEST(Serve, SessionAnswersQuestionsFromTheDocumentPrefilledOnce) {
    Served s("case_a");
    const auto ids = prompt_of("case_a");
    const std::vector<int32_t> doc(ids.begin(), ids.end() - 10);
    const std::vector<int32_t> q1(ids.end() - 10, ids.end());
    const std::vector<int32_t> q2(ids.begin() + 20, ids.begin() + 26);

    HttpResponse r = http(s.port, "POST", "/v1/sessions", json{{"prompt", doc}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json created = r.json();
    const std::string id = created["id"];
    EXPECT_EQ(created["prompt_tokens"], doc.size());
    EXPECT_GT(created["memory_tokens"].get<int64_t>(), 0);
    EXPECT_EQ(s.metrics.prefills(), 1);

    auto other = testing::open_golden_model(testing::golden_dir("case_a"));
    auto ask = [&](const std::vector<int32_t>& q, bool stream) {
        json b{{"prompt", q}, {"session", id}, {"max_tokens", 12}, {"ignore_eos", true}};
        if (stream) b["stream"] = true;
        HttpResponse a = s.complete(b);
        EXPECT_EQ(a.status, 200) << a.body;
        if (stream) {
            std::string finish;
            return json(streamed_ids(a.body, &finish));
        }
        EXPECT_EQ(a.json()["usage"]["prompt_tokens"], q.size());
        return a.json()["choices"][0]["token_ids"];
    };
    const json a1 = ask(q1, false);
    const json a2 = ask(q2, true);
    EXPECT_EQ(a1, json(two_call_greedy(*other->session, doc, q1, 12)));
    EXPECT_EQ(a2, json(two_call_greedy(*other->session, doc, q2, 12)));
    EXPECT_EQ(ask(q1, false), a1);  // the questions did not change the session
    EXPECT_NE(a1, a2);

    // The document went through the model once; each question once.
    EXPECT_EQ(s.metrics.prefills(), 1 + 3);
    r = http(s.port, "GET", "/v1/sessions/" + id);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["prefills"], 1);
    EXPECT_EQ(r.json()["uses"], 3);
    EXPECT_EQ(r.json()["memory_tokens"], created["memory_tokens"]);
    const std::string m = http(s.port, "GET", "/metrics").body;
    EXPECT_NE(m.find("\nfotrt_prompt_tokens_total " +
                     std::to_string(doc.size() + 2 * q1.size() + q2.size())),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("\nfotrt_sessions 1"), std::string::npos);

    EXPECT_EQ(http(s.port, "DELETE", "/v1/sessions/" + id).status, 200);
    EXPECT_EQ(http(s.port, "GET", "/v1/sessions/" + id).status, 404);
    EXPECT_EQ(http(s.port, "DELETE", "/v1/sessions/" + id).status, 404);
    r = s.complete({{"prompt", q1}, {"session", id}});
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.json()["error"]["code"], "session_not_found");
}

TEST(Serve, SessionCapsAndIdleTimeout) {
    serve::EngineOptions eo;
    eo.max_sessions = 2;
    eo.max_session_tokens = 100;
    // Long enough that a loaded machine does not expire the sessions while the caps are tested.
    eo.session_idle_timeout_s = 3;
    Served s("case_a", {}, eo);
    const auto ids = prompt_of("case_a");
    auto create = [&](size_t n) {
        return http(s.port, "POST", "/v1/sessions",
                    json{{"prompt", std::vector<int32_t>(ids.begin(), ids.begin() + n)}}.dump());
    };
    HttpResponse r = create(101);
    EXPECT_EQ(r.status, 429) << r.body;
    EXPECT_EQ(r.json()["error"]["code"], "session_limit");
    ASSERT_EQ(create(40).status, 200);
    ASSERT_EQ(create(40).status, 200);
    r = create(10);
    EXPECT_EQ(r.status, 429) << r.body;
    EXPECT_EQ(s.metrics.prefills(), 2);  // refused sessions are not prefilled
    // Bad requests on the session routes.
    EXPECT_EQ(http(s.port, "POST", "/v1/sessions", R"({"prompt": 5})").status, 400);
    EXPECT_EQ(http(s.port, "POST", "/v1/sessions", R"({"prompt": [1], "x": 1})").status, 400);
    EXPECT_EQ(http(s.port, "GET", "/v1/sessions").status, 405);
    EXPECT_EQ(http(s.port, "PUT", "/v1/sessions/sess-0").status, 405);
    EXPECT_EQ(s.complete({{"prompt", {1}}, {"session", 3}}).status, 400);
    // Unused for longer than the idle timeout: dropped (the engine checks every second). Polled
    // up to a generous deadline, so a slow machine delays the test instead of failing it.
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while ((status = http(s.port, "GET", "/v1/sessions/sess-0").status) != 404 &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    EXPECT_EQ(status, 404);
    EXPECT_EQ(create(10).status, 200);
}

TEST(Serve, ApiKeyGuardsEveryRouteButHealth) {
    serve::ServerOptions so;
    so.api_key = "s3cret";
    Served s("case_a", so);
    EXPECT_EQ(http(s.port, "GET", "/health").status, 200);
    HttpResponse r = http(s.port, "GET", "/v1/models");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.json()["error"]["code"], "invalid_api_key");
    EXPECT_EQ(http(s.port, "GET", "/metrics", "", "Authorization: Bearer wrong\r\n").status, 401);
    EXPECT_EQ(http(s.port, "POST", "/v1/completions", R"({"prompt": [1], "max_tokens": 2})").status,
              401);
    EXPECT_EQ(http(s.port, "POST", "/v1/completions", R"({"prompt": [1], "max_tokens": 2})",
                   "Authorization: Bearer s3cret\r\n")
                  .status,
              200);
}

// Mixed requests: prompt prefixes of several lengths, greedy and seeded sampling, some
// streaming, some questions to a memory session. Each client's result must equal the same request
// answered alone.
TEST(Serve, ConcurrentClientsGetTheirSerialResultsWithBatchedDecode) {
    Served s("case_a");
    const auto full = prompt_of("case_a");
    HttpResponse created =
        http(s.port, "POST", "/v1/sessions",
             json{{"prompt", std::vector<int32_t>(full.begin(), full.begin() + 100)}}.dump());
    ASSERT_EQ(created.status, 200) << created.body;
    const std::string session = created.json()["id"];
    struct Job {
        json body;
        bool stream;
    };
    std::vector<Job> jobs;
    for (int i = 0; i < 24; ++i) {
        const size_t len = 5 + (i * 37) % (full.size() - 5);
        json b{{"prompt", std::vector<int32_t>(full.begin(), full.begin() + len)},
               {"max_tokens", 6 + (i % 5) * 4},
               {"ignore_eos", true}};
        if (i % 3 == 1) b["temperature"] = 0.9, b["seed"] = i, b["top_p"] = 0.9;
        if (i % 5 == 3) {
            // A question to a session: a short prompt after the document.
            b["session"] = session;
            b["prompt"] = std::vector<int32_t>(full.begin() + i, full.begin() + i + 4);
        }
        jobs.push_back({b, i % 4 == 2});
    }
    auto run = [&](const Job& j) {
        json b = j.body;
        if (j.stream) b["stream"] = true;
        HttpResponse r = s.complete(b);
        EXPECT_EQ(r.status, 200) << r.body;
        if (j.stream) {
            std::string finish;
            return json(streamed_ids(r.body, &finish));
        }
        return r.json()["choices"][0]["token_ids"];
    };
    std::vector<json> serial;
    for (const Job& j : jobs) serial.push_back(run(j));
    const int64_t steps_before = s.metrics.decode_steps();
    EXPECT_EQ(s.metrics.max_sequences_per_step(), 1);

    std::vector<json> concurrent(jobs.size());
    std::vector<std::thread> clients;
    const int kClients = 8;
    for (int c = 0; c < kClients; ++c) {
        clients.emplace_back([&, c] {
            for (size_t i = c; i < jobs.size(); i += kClients) concurrent[i] = run(jobs[i]);
        });
    }
    for (auto& t : clients) t.join();
    for (size_t i = 0; i < jobs.size(); ++i) {
        EXPECT_EQ(concurrent[i], serial[i]) << "request " << i;
        EXPECT_EQ(concurrent[i].size(), jobs[i].body["max_tokens"].get<size_t>());
    }
    EXPECT_GT(s.metrics.decode_steps(), steps_before);
    EXPECT_GT(s.metrics.max_sequences_per_step(), 1);
}

// The issue's concurrency check: 32 clients x 8 requests at once, mixed: prompt prefixes of
// many lengths (short ones and ones of several windows, prefilled between decode steps),
// some streaming, some questions to one of two memory sessions. Every result must equal the
// same request answered alone, and the counters must account for every request.
// Greedy only: a batched decode step's GEMM sums a row in another order than a one-row step
// (BLAS picks its kernel by the row count), so logits differ in the last bits, which can move
// a sampled token where the draw falls on a boundary (the 8-client test above samples).
TEST(Serve, ThirtyTwoClientsTimesEightRequestsGetTheirSerialResults) {
    const int kClients = 32, kPerClient = 8;
    serve::EngineOptions eo;
    eo.max_batch = kClients;
    RunConfig run;
    run.threads = 1;  // tiny steps: a thread team would cost more than it saves
    Served s("case_a", {}, eo, run);
    const auto full = prompt_of("case_a");
    std::vector<std::string> sessions;
    for (size_t len : {100, 60}) {
        HttpResponse created =
            http(s.port, "POST", "/v1/sessions",
                 json{{"prompt", std::vector<int32_t>(full.begin(), full.begin() + len)}}.dump());
        ASSERT_EQ(created.status, 200) << created.body;
        sessions.push_back(created.json()["id"]);
    }
    struct Job {
        json body;
        bool stream;
    };
    // 64 distinct requests, each sent 4 times in the concurrent phase (by different clients,
    // at different times), so the serial phase answers 64, not 256.
    const int kDistinct = 64;
    std::vector<Job> jobs;
    for (int i = 0; i < kDistinct; ++i) {
        const size_t len = 3 + (i * 37) % (full.size() - 3);
        json b{{"prompt", std::vector<int32_t>(full.begin(), full.begin() + len)},
               {"max_tokens", 2 + (i % 4) * 2},
               {"ignore_eos", true}};
        if (i % 5 == 3) {
            // A question to a session: a short prompt after the document.
            const size_t at = static_cast<size_t>(i) % (full.size() - 4);
            b["session"] = sessions[(i / 5) % 2];
            b["prompt"] = std::vector<int32_t>(full.begin() + at, full.begin() + at + 4);
        }
        jobs.push_back({b, i % 4 == 2});
    }
    auto run_job = [&](const Job& j) {
        json b = j.body;
        if (j.stream) b["stream"] = true;
        HttpResponse r = s.complete(b);
        EXPECT_EQ(r.status, 200) << r.body;
        if (r.status != 200) return json();
        if (j.stream) {
            std::string finish;
            return json(streamed_ids(r.body, &finish));
        }
        return r.json()["choices"][0]["token_ids"];
    };
    std::vector<json> serial;
    for (const Job& j : jobs) serial.push_back(run_job(j));
    const int64_t steps_before = s.metrics.decode_steps();
    for (int i = kDistinct; i < kClients * kPerClient; ++i) {
        jobs.push_back(jobs[static_cast<size_t>((i * 13) % kDistinct)]);
        serial.push_back(serial[static_cast<size_t>((i * 13) % kDistinct)]);
    }

    // Each client sends its 8 requests one after another; the 32 clients start together.
    std::vector<json> concurrent(jobs.size());
    std::vector<std::thread> clients;
    std::atomic<int> ready{0};
    for (int c = 0; c < kClients; ++c) {
        clients.emplace_back([&, c] {
            ++ready;
            while (ready < kClients) std::this_thread::yield();
            for (size_t i = c; i < jobs.size(); i += kClients) concurrent[i] = run_job(jobs[i]);
        });
    }
    for (auto& t : clients) t.join();
    for (size_t i = 0; i < jobs.size(); ++i) {
        EXPECT_EQ(concurrent[i], serial[i]) << "request " << i;
        EXPECT_EQ(concurrent[i].size(), jobs[i].body["max_tokens"].get<size_t>());
    }
    EXPECT_GT(s.metrics.decode_steps(), steps_before);
    EXPECT_GT(s.metrics.max_sequences_per_step(), 1);
    const std::string m = http(s.port, "GET", "/metrics").body;
    EXPECT_NE(
        m.find("fotrt_requests_total{code=\"200\"} " + std::to_string(2 + kDistinct + jobs.size())),
        std::string::npos)
        << m;
}

TEST(Serve, ClientDisconnectMidStreamFreesTheSequence) {
    Served s("case_a");
    const int fd = testing::connect_loopback(s.port);
    testing::send_all(fd, testing::request_text("POST", "/v1/completions",
                                                json{{"prompt", {1, 5, 9}},
                                                     {"max_tokens", 20000},
                                                     {"stream", true},
                                                     {"ignore_eos", true}}
                                                    .dump()));
    // Wait for the first event, then hang up.
    std::string got;
    char buf[4096];
    while (got.find("data: ") == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        ASSERT_GT(::poll(&p, 1, 30000), 0);
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        ASSERT_GT(n, 0);
        got.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::string m;
    // The gauges are updated after the request is counted: wait for all of them together.
    auto settled = [](const std::string& text) {
        for (const char* want :
             {"fotrt_requests_total{code=\"499\"} 1", "\nfotrt_running_sequences 0",
              "\nfotrt_memory_tokens 0", "\nfotrt_sequence_bytes 0"}) {
            if (text.find(want) == std::string::npos) return false;
        }
        return true;
    };
    while (std::chrono::steady_clock::now() < deadline) {
        m = http(s.port, "GET", "/metrics").body;
        if (settled(m)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_NE(m.find("fotrt_requests_total{code=\"499\"} 1"), std::string::npos) << m;
    // Cancelled well before its 20000 tokens.
    const std::string key = "\nfotrt_generation_tokens_total ";
    const auto at = m.find(key);
    ASSERT_NE(at, std::string::npos);
    EXPECT_LT(std::stoll(m.substr(at + key.size())), 20000);
    EXPECT_NE(m.find("\nfotrt_running_sequences 0"), std::string::npos);
    EXPECT_NE(m.find("\nfotrt_memory_tokens 0"), std::string::npos);
    EXPECT_NE(m.find("\nfotrt_sequence_bytes 0"), std::string::npos);
    // The server goes on serving.
    HttpResponse r = s.complete({{"prompt", {1, 5, 9}}, {"max_tokens", 3}});
    EXPECT_EQ(r.status, 200);
}

// A running stream (A) must get a decode step between every two windows of a long prompt (B)
// and of a session's document; A and B still equal their serial answers.
TEST(Serve, LongPrefillIsInterleavedWithRunningDecodes) {
    Served s("case_a");
    const auto full = prompt_of("case_a");
    const Session& session = *s.model->session;
    const int64_t W = session.model_config.max_position_embeddings;
    const int64_t lcl = session.model->options().last_context_length;
    const int64_t prefix = static_cast<int64_t>(full.size()) - lcl;
    const int64_t steps = (prefix + W - 1) / W + 1;  // the prefix windows, then the tail
    ASSERT_GE(steps, 3) << "the prompt must span several windows";

    const json a_body{{"prompt", {1, 5, 9}}, {"max_tokens", 20000}, {"ignore_eos", true}};
    const int fd = testing::connect_loopback(s.port);
    json streamed = a_body;
    streamed["stream"] = true;
    testing::send_all(fd, testing::request_text("POST", "/v1/completions", streamed.dump()));
    std::string got;
    char buf[4096];
    while (got.find("data: ") == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        ASSERT_GT(::poll(&p, 1, 30000), 0);
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        ASSERT_GT(n, 0);
        got.append(buf, static_cast<size_t>(n));
    }
    // A is running now and runs until we hang up.
    const int64_t steps0 = s.metrics.prefill_steps();
    const int64_t during0 = s.metrics.decode_steps_during_prefill();
    HttpResponse r = s.complete({{"prompt", full}, {"max_tokens", 16}, {"ignore_eos", true}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["token_ids"], reference("case_a")["new_tokens"]);
    EXPECT_EQ(s.metrics.prefill_steps() - steps0, steps);
    EXPECT_EQ(s.metrics.decode_steps_during_prefill() - during0, steps - 1);

    r = http(s.port, "POST", "/v1/sessions", json{{"prompt", full}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(s.metrics.prefill_steps() - steps0, 2 * steps);
    EXPECT_EQ(s.metrics.decode_steps_during_prefill() - during0, 2 * (steps - 1));

    // Hang up A (the server cancels it) and collect the tokens it streamed.
    ::shutdown(fd, SHUT_WR);
    got += testing::read_all(fd);
    ::close(fd);
    std::vector<int32_t> a_ids;
    for (const std::string& ev : testing::sse_data(testing::parse_response(got).body)) {
        const json j = json::parse(ev);
        for (const auto& t : j["choices"][0]["token_ids"]) a_ids.push_back(t.get<int32_t>());
    }
    ASSERT_GE(static_cast<int64_t>(a_ids.size()), 2 * (steps - 1)) << got.substr(0, 600);
    json alone = a_body;
    alone["max_tokens"] = a_ids.size();
    r = s.complete(alone);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["token_ids"], json(a_ids));
}

// A client that sends part of a request and stalls is answered 408 and dropped after the
// read timeout, freeing its connection slot (one slot here: the next client needs it).
TEST(Serve, StalledRequestIsDroppedAfterTheReadTimeout) {
    serve::ServerOptions so;
    so.read_timeout_s = 0.3;
    so.max_connections = 1;
    Served s("case_a", so);
    const std::vector<std::string> partial{
        "GET /health HTTP/1.1\r\nHost: loc",  // the head stops midway
        "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\r\n"
        "{\"prompt\": [1, 5",  // the body stops midway
    };
    for (const std::string& p : partial) {
        const int fd = testing::connect_loopback(s.port);
        testing::send_all(fd, p);
        // The server answers and closes long before read_all's own 30 s limit.
        const auto start = std::chrono::steady_clock::now();
        HttpResponse r = testing::parse_response(testing::read_all(fd, 30000));
        ::close(fd);
        EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(25));
        EXPECT_EQ(r.status, 408) << p;
        ASSERT_FALSE(r.body.empty()) << p;
        EXPECT_EQ(r.json()["error"]["code"], "request_timeout");
        EXPECT_EQ(http(s.port, "GET", "/health").status, 200);
    }
    // The server goes on serving.
    HttpResponse r = s.complete({{"prompt", {1, 5, 9}}, {"max_tokens", 2}});
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_NE(http(s.port, "GET", "/metrics").body.find("fotrt_requests_total{code=\"408\"} 2"),
              std::string::npos);
}

}  // namespace
}  // namespace fot
