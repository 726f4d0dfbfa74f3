// `fotrt serve` as a user runs it: --port 0 prints the port it listens on; it answers over
// HTTP; SIGTERM lets a running request finish (drain), does not wait for a half-sent request,
// and the process exits 0.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
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

    explicit ServeProcess(const std::vector<std::string>& extra) {
        int p[2];
        EXPECT_EQ(::pipe(p), 0);
        pid = ::fork();
        if (pid == 0) {
            ::dup2(p[1], 1);
            ::close(p[0]);
            std::vector<std::string> args = {
                FOTRT_EXE, "serve", "--model", testing::golden_dir("case_a"), "--port", "0"};
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

TEST(ServeCli, RefusesABusyPort) {
    ServeProcess a({});
    ASSERT_GT(a.port, 0);
    ServeProcess b({"--port", std::to_string(a.port)});
    EXPECT_EQ(b.port, 0);
    EXPECT_EQ(b.wait_exit(60), 1);
}

}  // namespace
}  // namespace fot
