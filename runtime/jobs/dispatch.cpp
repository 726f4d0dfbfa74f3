#include "runtime/jobs/dispatch.h"

#include <chrono>
#include <concepts>
#include <cstring>
#include <thread>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/core/timer.h"

namespace fot {

namespace {

// Control messages: leader -> rank 0 "R" (first request) or "D" + result; rank 0 -> leader
// (and leader -> its group) "W" + item or "S" (stop).
template <typename T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
T get(const std::string& in, size_t& pos) {
    FOT_CHECK(pos + sizeof(T) <= in.size(), "dispatch: truncated control message");
    T v;
    std::memcpy(&v, in.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
}

std::string encode_item(const WorkItem& item) {
    std::string m = "W";
    put<int64_t>(m, item.index);
    m += item.payload;
    return m;
}

WorkItem decode_item(const std::string& m) {
    size_t pos = 1;
    WorkItem item;
    item.index = get<int64_t>(m, pos);
    item.payload = m.substr(pos);
    return item;
}

std::string encode_result(const WorkResult& r) {
    std::string m = "D";
    put<int64_t>(m, r.index);
    put<uint8_t>(m, r.ok ? 1 : 0);
    put<int64_t>(m, r.tokens);
    m += r.record;
    return m;
}

WorkResult decode_result(const std::string& m) {
    size_t pos = 1;
    WorkResult r;
    r.index = get<int64_t>(m, pos);
    r.ok = get<uint8_t>(m, pos) != 0;
    r.tokens = get<int64_t>(m, pos);
    r.record = m.substr(pos);
    return r;
}

// Communicator::probe(peer) -- "a message from peer is waiting" -- when the communicator
// interface offers it; detected at compile time so that this file needs no change when it
// appears.
template <typename C>
constexpr bool kHasProbe = requires(C& c, int peer) {
    { c.probe(peer) } -> std::convertible_to<bool>;
};

template <typename C>
bool probe(C& comm, int peer) {
    if constexpr (kHasProbe<C>) {
        return comm.probe(peer);
    } else {
        return true;  // no probe: the caller blocks (see dispatch_can_poll)
    }
}

}  // namespace

bool dispatch_can_poll() {
    return kHasProbe<parallel::Communicator>;
}

DispatchStats run_dispatch(const parallel::World& world, parallel::Communicator& world_comm,
                           const DispatchHooks& hooks) {
    Timer total;
    DispatchStats stats;
    const bool leader = world.is_group_leader();
    auto group = world_comm.split(world.group(), world.rank());
    auto ctl = world_comm.split(leader ? 0 : -1, world.group());
    FOT_ASSERT(group && (group->rank() == 0) == leader);
    group->set_timeout(0);
    if (ctl) ctl->set_timeout(0);

    const auto noop = [] {};
    auto run_item = [&](const WorkItem& item, const std::function<void()>& poll) {
        Timer t;
        WorkResult r = hooks.run(item, poll);
        stats.busy_seconds += t.seconds();
        ++stats.items;
        stats.tokens += r.tokens;
        return r;
    };

    if (!leader) {
        for (;;) {
            std::string msg;
            group->broadcast_string(msg, 0);
            if (msg == "S") break;
            run_item(decode_item(msg), noop);
        }
    } else if (!world.is_coordinator()) {
        ctl->send_string("R", 0);
        for (;;) {
            std::string msg = ctl->recv_string(0);
            group->broadcast_string(msg, 0);
            if (msg == "S") break;
            WorkResult r = run_item(decode_item(msg), noop);
            ctl->send_string(encode_result(r), 0);
        }
    } else {
        const int dp = world.dp();
        std::vector<char> active(static_cast<size_t>(dp), 1);
        active[0] = 0;
        int remaining = dp - 1;
        // One request from leader l: take its result, answer with the next item or stop.
        auto serve = [&](int l) {
            std::string msg = ctl->recv_string(l);
            FOT_CHECK(!msg.empty() && (msg[0] == 'R' || msg[0] == 'D'),
                      "dispatch: unexpected control message from group ", l);
            if (msg[0] == 'D') hooks.done(decode_result(msg), l);
            std::optional<WorkItem> item = hooks.next();
            if (item) {
                ctl->send_string(encode_item(*item), l);
            } else {
                ctl->send_string("S", l);
                active[l] = 0;
                --remaining;
            }
        };
        // Serves the leaders whose request is waiting (all of them, blocking, without probe).
        auto serve_ready = [&] {
            for (int l = 1; l < dp; ++l) {
                if (active[l] && probe(*ctl, l)) serve(l);
            }
        };
        const std::function<void()> poll =
            dispatch_can_poll() ? std::function<void()>(serve_ready) : noop;
        for (;;) {
            serve_ready();
            std::optional<WorkItem> item = hooks.next();
            std::string msg = item ? encode_item(*item) : std::string("S");
            group->broadcast_string(msg, 0);
            if (!item) break;
            WorkResult r = run_item(*item, poll);
            hooks.done(std::move(r), 0);
        }
        while (remaining > 0) {
            serve_ready();
            if (dispatch_can_poll() && remaining > 0) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        }
    }
    stats.total_seconds = total.seconds();
    return stats;
}

}  // namespace fot
