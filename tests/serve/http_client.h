// A minimal HTTP/1.1 client over POSIX sockets for the server tests: it sends raw bytes (so
// that tests can send malformed requests) and reads the response to the end of the
// connection (requests say Connection: close).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fot::testing {

struct HttpResponse {
    int status = 0;
    std::string head, body;
    nlohmann::json json() const { return nlohmann::json::parse(body); }
};

inline int connect_loopback(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot connect to port " + std::to_string(port));
    }
    return fd;
}

inline void send_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;  // the server may close early (413): read what it said
        off += static_cast<size_t>(n);
    }
}

// Reads until EOF or `timeout_ms` without data.
inline std::string read_all(int fd, int timeout_ms = 60000) {
    std::string out;
    char buf[65536];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

inline HttpResponse parse_response(const std::string& raw) {
    HttpResponse r;
    const size_t sep = raw.find("\r\n\r\n");
    r.head = raw.substr(0, sep);
    if (sep != std::string::npos) r.body = raw.substr(sep + 4);
    if (raw.rfind("HTTP/1.1 ", 0) == 0) r.status = std::stoi(raw.substr(9, 3));
    return r;
}

inline HttpResponse http_raw(int port, const std::string& raw) {
    const int fd = connect_loopback(port);
    send_all(fd, raw);
    HttpResponse r = parse_response(read_all(fd));
    ::close(fd);
    return r;
}

inline std::string request_text(const std::string& method, const std::string& path,
                                const std::string& body = "",
                                const std::string& extra_headers = "") {
    std::string r = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" +
                    extra_headers;
    if (!body.empty() || method == "POST")
        r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n";
    return r + "\r\n" + body;
}

inline HttpResponse http(int port, const std::string& method, const std::string& path,
                         const std::string& body = "", const std::string& extra_headers = "") {
    return http_raw(port, request_text(method, path, body, extra_headers));
}

// The JSON payloads of a server-sent-event body ("data: {...}\n\n" ... "data: [DONE]").
inline std::vector<std::string> sse_data(const std::string& body) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at < body.size()) {
        size_t end = body.find("\n\n", at);
        if (end == std::string::npos) end = body.size();
        const std::string ev = body.substr(at, end - at);
        if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
        at = end + 2;
    }
    return out;
}

}  // namespace fot::testing
