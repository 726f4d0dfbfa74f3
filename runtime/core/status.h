// Errors and status values.
//
// Two tiers, as in c10/faiss:
//  - FOT_CHECK(cond, parts...) is for caller, configuration and input errors. It throws
//    fot::Error whose message is the concatenation of `parts` (anything printable with <<).
//    The message must name the input and what to fix; it is what the user sees.
//  - FOT_ASSERT(cond) is for internal invariants: a failure is a bug in fotrt.
// Expected failures at I/O edges may instead return Status / Result<T> (leveldb style).
// Exceptions stop at executables: launch/main.cpp prints them as one line and exits non-zero
// (MPI_Abort in multi-rank runs).
#pragma once

#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace fot {

class Error : public std::runtime_error {
  public:
    explicit Error(std::string message) : std::runtime_error(std::move(message)) {}
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    return os.str();
}
[[noreturn]] void throw_assert(const char* expr, const char* file, int line);
}  // namespace detail

// Builds a message from printable parts: fot::str("k=", k, " too big").
template <typename... Parts>
std::string str(const Parts&... parts) {
    return detail::concat(parts...);
}

#define FOT_CHECK(cond, ...)                                      \
    do {                                                          \
        if (!(cond)) throw ::fot::Error(::fot::str(__VA_ARGS__)); \
    } while (0)

#define FOT_THROW(...) throw ::fot::Error(::fot::str(__VA_ARGS__))

#define FOT_ASSERT(cond)                                                     \
    do {                                                                     \
        if (!(cond)) ::fot::detail::throw_assert(#cond, __FILE__, __LINE__); \
    } while (0)

// A value-type outcome for I/O edges. ok() or a message naming the input.
class Status {
  public:
    Status() = default;
    static Status ok_status() { return Status(); }
    static Status error(std::string msg) { return Status(std::move(msg), true); }
    bool ok() const { return !failed_; }
    const std::string& message() const { return msg_; }
    // Throws fot::Error when not ok.
    void check() const {
        if (failed_) throw Error(msg_);
    }

  private:
    Status(std::string msg, bool failed) : msg_(std::move(msg)), failed_(failed) {}
    std::string msg_;
    bool failed_ = false;
};

template <typename T>
class Result {
  public:
    Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
    Result(Status status) : status_(std::move(status)) { FOT_ASSERT(!status_.ok()); }  // NOLINT
    bool ok() const { return value_.has_value(); }
    const Status& status() const { return status_; }
    // The value, or throws fot::Error with the status message.
    T& value() & {
        status_.check();
        return *value_;
    }
    T&& value() && {
        status_.check();
        return std::move(*value_);
    }

  private:
    std::optional<T> value_;
    Status status_;
};

}  // namespace fot
