#include "runtime/jobs/dispatch.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>
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

using Clock = std::chrono::steady_clock;

// Seconds between heartbeats for a watchdog timeout of `timeout` s (0: no watchdog; the
// heartbeats then only cost a tiny message now and then).
Clock::duration heartbeat_interval(double timeout) {
    const double s = timeout > 0 ? timeout / 4 : 30.0;
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// FOT_DISPATCH_FREEZE="RANK:N" (see dispatch.h); {-1, -1} when unset.
std::pair<int, int64_t> freeze_point() {
    const char* e = std::getenv("FOT_DISPATCH_FREEZE");
    int rank = -1;
    long long items = -1;
    if (e == nullptr || std::sscanf(e, "%d:%lld", &rank, &items) != 2) return {-1, -1};
    return {rank, items};
}

}  // namespace

DispatchStats run_dispatch(const parallel::World& world, parallel::Communicator& world_comm,
                           const DispatchHooks& hooks) {
    Timer total;
    DispatchStats stats;
    const bool leader = world.is_group_leader();
    // Both inherit the world communicator's watchdog timeout: no wait below is unwatched.
    auto group = world_comm.split(world.group(), world.rank());
    auto ctl = world_comm.split(leader ? 0 : -1, world.group());
    FOT_ASSERT(group && (group->rank() == 0) == leader);
    const double timeout = world_comm.timeout();
    const Clock::duration beat = heartbeat_interval(timeout);
    const auto freeze = freeze_point();

    const auto noop = [] {};
    auto run_item = [&](const WorkItem& item, const std::function<void()>& poll) {
        if (freeze.first == world.rank() && freeze.second == stats.items) std::raise(SIGSTOP);
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
            if (msg == "H") continue;
            run_item(decode_item(msg), noop);
        }
    } else if (!world.is_coordinator()) {
        ctl->send_string("R", 0);
        for (;;) {
            std::string msg = ctl->recv_string(0);
            group->broadcast_string(msg, 0);
            if (msg == "S") break;
            if (msg == "H") continue;
            Clock::time_point told = Clock::now();
            const std::function<void()> heartbeat = [&] {
                if (Clock::now() - told < beat) return;
                ctl->send_string("H", 0);
                told = Clock::now();
            };
            WorkResult r = run_item(decode_item(msg), heartbeat);
            ctl->send_string(encode_result(r), 0);
        }
    } else {
        const int dp = world.dp();
        // kRunning: holds an item (or has not asked yet) and must be heard from within the
        // timeout; kParked: asked when no item was left, kept alive with "H" until the end.
        enum class State { kRunning, kParked };
        struct Leader {
            State state = State::kRunning;
            Clock::time_point heard, told;
            int64_t item = -1;
        };
        std::vector<Leader> leaders(static_cast<size_t>(dp));
        for (Leader& l : leaders) l.heard = Clock::now();
        bool exhausted = false;
        auto next = [&]() -> std::optional<WorkItem> {
            if (exhausted) return std::nullopt;
            std::optional<WorkItem> item = hooks.next();
            exhausted = !item;
            return item;
        };
        // One message from leader l: a heartbeat, or a request (with the previous result).
        auto serve = [&](int l) {
            Leader& L = leaders[static_cast<size_t>(l)];
            std::string msg = ctl->recv_string(l);
            L.heard = Clock::now();
            FOT_CHECK(!msg.empty() && (msg[0] == 'R' || msg[0] == 'D' || msg[0] == 'H'),
                      "dispatch: unexpected control message from group ", l);
            if (msg[0] == 'H') return;
            if (msg[0] == 'D') hooks.done(decode_result(msg), l);
            if (std::optional<WorkItem> item = next()) {
                L.item = item->index;
                ctl->send_string(encode_item(*item), l);
            } else {
                L.state = State::kParked;
                L.told = Clock::now();
            }
        };
        // Between rank 0's own windows and while it waits: every waiting message, heartbeats
        // to parked leaders, and the deadline of running ones. `ctl` is an MPI communicator
        // (dp > 1), whose probe really tests: the loop ends when no message is waiting.
        const std::function<void()> service = [&] {
            for (int l = 1; l < dp; ++l) {
                while (leaders[static_cast<size_t>(l)].state == State::kRunning && ctl->probe(l)) {
                    serve(l);
                }
            }
            const Clock::time_point now = Clock::now();
            for (int l = 1; l < dp; ++l) {
                Leader& L = leaders[static_cast<size_t>(l)];
                if (L.state == State::kParked && now - L.told >= beat) {
                    ctl->send_string("H", l);
                    L.told = now;
                }
                if (L.state == State::kRunning && timeout > 0 &&
                    now - L.heard > std::chrono::duration<double>(timeout)) {
                    const int leader_rank = world.dp_leader_ranks()[static_cast<size_t>(l)];
                    FOT_THROW("dp group ", l, " (leader rank ", leader_rank, ") sent nothing for ",
                              timeout, " s (FOT_COLLECTIVE_TIMEOUT) ",
                              L.item >= 0 ? str("while running item ", L.item)
                                          : std::string("before its first request"),
                              ": a rank of that group is stuck, frozen or has died");
                }
            }
        };
        for (;;) {
            service();
            std::optional<WorkItem> item = next();
            if (!item) break;
            std::string msg = encode_item(*item);
            group->broadcast_string(msg, 0);
            WorkResult r = run_item(*item, service);
            hooks.done(std::move(r), 0);
        }
        // Rank 0's share is done: serve the others until every group has asked for more, and
        // keep group 0 (waiting in its broadcast) alive meanwhile.
        Clock::time_point group_told = Clock::now();
        auto running = [&] {
            for (int l = 1; l < dp; ++l) {
                if (leaders[static_cast<size_t>(l)].state == State::kRunning) return true;
            }
            return false;
        };
        while (running()) {
            service();
            if (group->size() > 1 && Clock::now() - group_told >= beat) {
                std::string h = "H";
                group->broadcast_string(h, 0);
                group_told = Clock::now();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        for (int l = 1; l < dp; ++l) ctl->send_string("S", l);
        std::string stop = "S";
        group->broadcast_string(stop, 0);
    }
    stats.total_seconds = total.seconds();
    return stats;
}

}  // namespace fot
