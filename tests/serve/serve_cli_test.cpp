// `fotrt serve` as a user runs it: --port 0 prints the port it listens on; it answers over
// HTTP; SIGTERM lets a running request finish (drain), does not wait for a half-sent request,
// and the process exits 0. Under mpirun with 2 ranks (--tp 2, --mp 2): rank 0 serves, rank
// 1 follows its model calls; completions equal the golden greedy tokens, streaming equals
// them, a session answers two questions as the one-process server does with the document
// prefilled once, concurrent requests equal their serial answers, and SIGTERM ends both ranks
// with exit 0.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/model/golden_util.h"
#include "tests/serve/http_client.h"

namespace fot {
namespace {

using nlohmann::json;

// A fotrt serve child with its stdout on a pipe.
struct ServeProcess {
    pid_t pid = -1;
    int out = -1;
    int port = 0;
    std::string printed;

    // `launcher`: e.g. mpirun and its arguments, run with fotrt as its program.
    explicit ServeProcess(const std::vector<std::string>& extra,
                          const std::vector<std::string>& launcher = {}) {
        int p[2];
        EXPECT_EQ(::pipe(p), 0);
        pid = ::fork();
        if (pid == 0) {
            ::dup2(p[1], 1);
            ::close(p[0]);
            ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
            ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
            ::setenv("OMP_NUM_THREADS", "1", 1);
            std::vector<std::string> args = launcher;
            for (std::string a :
                 {std::string(FOTRT_EXE), std::string("serve"), std::string("--model"),
                  testing::golden_dir("case_a"), std::string("--port"), std::string("0")})
                args.push_back(a);
            args.insert(args.end(), extra.begin(), extra.end());
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(p[1]);
        out = p[0];
        // The first line says where it listens.
        const std::string marker = "listening on http://127.0.0.1:";
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (printed.find('\n') == std::string::npos &&
               std::chrono::steady_clock::now() < deadline) {
            pollfd pf{out, POLLIN, 0};
            if (::poll(&pf, 1, 1000) <= 0) continue;
            char buf[256];
            const ssize_t n = ::read(out, buf, sizeof buf);
            if (n <= 0) break;
            printed.append(buf, static_cast<size_t>(n));
        }
        const size_t at = printed.find(marker);
        if (at != std::string::npos) port = std::stoi(printed.substr(at + marker.size()));
    }
    // Waits for the exit; returns the exit code (128 + signal when killed).
    int wait_exit(int seconds) {
        for (int i = 0; i < seconds * 20; ++i) {
            int status = 0;
            if (::waitpid(pid, &status, WNOHANG) == pid) {
                pid = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return -1;
    }
    ~ServeProcess() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        if (out >= 0) ::close(out);
    }
};

TEST(ServeCli, PrintsItsPortServesAndDrainsOnSigterm) {
    ServeProcess p({"--max-batch", "4"});
    ASSERT_GT(p.port, 0) << p.printed;
    EXPECT_EQ(p.printed.rfind("fotrt serve: listening on http://127.0.0.1:", 0), 0u) << p.printed;
    EXPECT_EQ(testing::http(p.port, "GET", "/health").status, 200);

    const auto ref = testing::read_json(testing::golden_dir("case_a") + "/greedy.json");
    const json body{
        {"prompt", testing::read_ids(testing::golden_dir("case_a") + "/input_ids.json")},
        {"max_tokens", 16},
        {"ignore_eos", true}};
    testing::HttpResponse r = testing::http(p.port, "POST", "/v1/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["token_ids"], ref["new_tokens"]);

    // A long streaming request is running when SIGTERM comes: it still gets all its tokens.
    const int fd = testing::connect_loopback(p.port);
    testing::send_all(
        fd,
        testing::request_text(
            "POST", "/v1/completions",
            json{{"prompt", {1, 7}}, {"max_tokens", 3000}, {"stream", true}, {"ignore_eos", true}}
                .dump()));
    std::string got;
    char buf[4096];
    while (got.find("data: ") == std::string::npos) {
        pollfd pf{fd, POLLIN, 0};
        ASSERT_GT(::poll(&pf, 1, 30000), 0);
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        ASSERT_GT(n, 0);
        got.append(buf, static_cast<size_t>(n));
    }
    // A client that sent half a request must not hold up the shutdown.
    const int half = testing::connect_loopback(p.port);
    testing::send_all(half, "POST /v1/completions HTTP/1.1\r\nHost: x\r\n");
    ASSERT_EQ(::kill(p.pid, SIGTERM), 0);
    got += testing::read_all(fd);
    ::close(fd);
    const auto events = testing::sse_data(testing::parse_response(got).body);
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(events.back(), "[DONE]");
    EXPECT_EQ(json::parse(events[events.size() - 2])["usage"]["completion_tokens"], 3000);
    EXPECT_EQ(p.wait_exit(60), 0);
    ::close(half);
}

// The processes mpirun started (its direct children: the ranks, on one node).
std::vector<pid_t> children_of(pid_t pid) {
    std::vector<pid_t> out;
    const std::string task = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& t : std::filesystem::directory_iterator(task)) {
        std::ifstream in(t.path() / "children");
        for (pid_t c; in >> c;) out.push_back(c);
    }
    return out;
}

// The session and concurrent part of the multi-rank test, run against any server: returns
// every answer, in order.
std::vector<json> session_and_batch(int port) {
    const auto ids = testing::read_ids(testing::golden_dir("case_a") + "/input_ids.json");
    std::vector<json> out;
    const std::vector<int32_t> doc(ids.begin(), ids.end() - 10);
    testing::HttpResponse r =
        testing::http(port, "POST", "/v1/sessions", json{{"prompt", doc}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return out;
    const std::string id = r.json()["id"];
    for (size_t q : {10, 40}) {
        json b{{"session", id},
               {"prompt", std::vector<int32_t>(ids.end() - q, ids.end() - q + 6)},
               {"max_tokens", 8},
               {"ignore_eos", true}};
        r = testing::http(port, "POST", "/v1/completions", b.dump());
        EXPECT_EQ(r.status, 200) << r.body;
        out.push_back(r.status == 200 ? r.json()["choices"][0]["token_ids"] : json());
    }
    r = testing::http(port, "GET", "/v1/sessions/" + id);
    EXPECT_EQ(r.json()["prefills"], 1);
    EXPECT_EQ(r.json()["uses"], 2);
    // Four requests at once (a batched decode across the ranks), each then alone.
    auto body = [&](int i) {
        return json{{"prompt", std::vector<int32_t>(ids.begin(), ids.begin() + 5 + 30 * i)},
                    {"max_tokens", 6 + i},
                    {"ignore_eos", true}}
            .dump();
    };
    std::vector<json> together(4);
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i) {
        ts.emplace_back([&, i] {
            testing::HttpResponse a = testing::http(port, "POST", "/v1/completions", body(i));
            together[i] = a.status == 200 ? a.json()["choices"][0]["token_ids"] : json(a.status);
        });
    }
    for (auto& t : ts) t.join();
    for (int i = 0; i < 4; ++i) {
        testing::HttpResponse a = testing::http(port, "POST", "/v1/completions", body(i));
        EXPECT_EQ(a.status, 200) << a.body;
        EXPECT_EQ(together[i], a.json()["choices"][0]["token_ids"]) << "request " << i;
        out.push_back(together[i]);
    }
    EXPECT_EQ(testing::http(port, "DELETE", "/v1/sessions/" + id).status, 200);
    return out;
}

class ServeMpi : public ::testing::TestWithParam<const char*> {};

TEST_P(ServeMpi, TwoRanksServeWhatOneProcessServes) {
    std::vector<json> single;
    {
        ServeProcess one({});
        ASSERT_GT(one.port, 0) << one.printed;
        single = session_and_batch(one.port);
        ASSERT_EQ(::kill(one.pid, SIGTERM), 0);
        EXPECT_EQ(one.wait_exit(60), 0);
    }
    ServeProcess p({GetParam(), "2"}, {FOT_MPIEXEC, "-np", "2", "--oversubscribe"});
    ASSERT_GT(p.port, 0) << p.printed;
    const auto ref = testing::read_json(testing::golden_dir("case_a") + "/greedy.json");
    json body{{"prompt", testing::read_ids(testing::golden_dir("case_a") + "/input_ids.json")},
              {"max_tokens", 16},
              {"ignore_eos", true}};
    testing::HttpResponse r = testing::http(p.port, "POST", "/v1/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["token_ids"], ref["new_tokens"]);
    body["stream"] = true;
    r = testing::http(p.port, "POST", "/v1/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    std::vector<int32_t> streamed;
    for (const std::string& ev : testing::sse_data(r.body)) {
        if (ev == "[DONE]") continue;
        const json j = json::parse(ev);
        for (const auto& t : j["choices"][0]["token_ids"]) streamed.push_back(t.get<int32_t>());
    }
    EXPECT_EQ(json(streamed), ref["new_tokens"]);
    EXPECT_EQ(session_and_batch(p.port), single);
    EXPECT_NE(testing::http(p.port, "GET", "/metrics").body.find("\nfotrt_prefills_total 13"),
              std::string::npos);
    // SIGTERM to every rank (what mpirun forwards; mpirun itself reports a signalled job as
    // failed, so the ranks are signalled here): rank 0 drains and tells rank 1 to stop, rank 1
    // ignores the signal and follows; both exit 0, so mpirun does.
    const std::vector<pid_t> ranks = children_of(p.pid);
    ASSERT_EQ(ranks.size(), 2u);
    for (pid_t r : ranks) EXPECT_EQ(::kill(r, SIGTERM), 0);
    EXPECT_EQ(p.wait_exit(60), 0);
}

INSTANTIATE_TEST_SUITE_P(Grid, ServeMpi, ::testing::Values("--tp", "--mp"));

// Two ranks without --tp/--mp would be two data-parallel groups: refused, nothing served.
TEST(ServeMpiRefusal, DataParallelGroupsAreRefused) {
    ServeProcess p({}, {FOT_MPIEXEC, "-np", "2", "--oversubscribe"});
    EXPECT_EQ(p.port, 0) << p.printed;
    const int code = p.wait_exit(60);
    EXPECT_NE(code, 0);
    EXPECT_NE(code, -1) << "still running";
}

TEST(ServeCli, RefusesABusyPort) {
    ServeProcess a({});
    ASSERT_GT(a.port, 0);
    ServeProcess b({"--port", std::to_string(a.port)});
    EXPECT_EQ(b.port, 0);
    EXPECT_EQ(b.wait_exit(60), 1);
}

}  // namespace
}  // namespace fot
