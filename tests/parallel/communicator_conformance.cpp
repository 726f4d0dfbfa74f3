#include "tests/parallel/communicator_conformance.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "parallel/mpi_session.h"
#include "parallel/world.h"

namespace fot::parallel::testing {

bool all_ranks_agree(Communicator& comm, bool ok) {
    int32_t v = ok ? 1 : 0;
    comm.all_reduce(host_view(&v, 1), ReduceOp::kMin);
    return v == 1;
}

ScopedMpiChunk::ScopedMpiChunk(int64_t elements) : saved_(detail::mpi_max_chunk()) {
    detail::set_mpi_max_chunk(elements);
}
ScopedMpiChunk::~ScopedMpiChunk() {
    detail::set_mpi_max_chunk(saved_);
}

namespace {

// A value that is not exactly representable and differs per (rank, i), so summation order
// matters and wrong placement shows.
float contribution(int rank, int64_t i) {
    return 0.1f * static_cast<float>(rank + 1) + 1e-3f * static_cast<float>(i % 97) -
           0.37f * static_cast<float>((rank * 31 + i) % 5);
}

uint32_t bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

TEST_P(CommunicatorConformance, RankAndSizeAreConsistent) {
    EXPECT_GE(comm().size(), 1);
    EXPECT_GE(comm().rank(), 0);
    EXPECT_LT(comm().rank(), comm().size());
    EXPECT_EQ(comm().device().kind, DeviceKind::kCpu);
    std::vector<int32_t> ranks(static_cast<size_t>(comm().size()), -1);
    int32_t me = comm().rank();
    comm().all_gather(host_view(&me, 1), host_view(ranks.data(), comm().size()));
    for (int r = 0; r < comm().size(); ++r) EXPECT_EQ(ranks[r], r);
}

TEST_P(CommunicatorConformance, AllReduceSumF32IsRankOrderedAndIdenticalEverywhere) {
    for (int64_t chunk : {int64_t{0}, int64_t{3}}) {
        std::unique_ptr<ScopedMpiChunk> guard;
        if (chunk > 0) guard = std::make_unique<ScopedMpiChunk>(chunk);
        for (int64_t n : {0, 1, 7, 1000, 5003}) {
            std::vector<float> buf(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) buf[i] = contribution(comm().rank(), i);
            comm().all_reduce_sum(host_view(buf.data(), n));
            int64_t wrong = 0;
            for (int64_t i = 0; i < n; ++i) {
                float want = contribution(0, i);
                for (int r = 1; r < comm().size(); ++r) want += contribution(r, i);
                wrong += bits(buf[i]) != bits(want);
            }
            EXPECT_EQ(wrong, 0) << "n=" << n << " chunk=" << chunk;
            // Bitwise identical on every rank.
            std::vector<float> all(static_cast<size_t>(n * comm().size()));
            comm().all_gather(host_view(buf.data(), n), host_view(all.data(), n * comm().size()));
            for (int r = 1; r < comm().size(); ++r) {
                EXPECT_EQ(std::memcmp(all.data(), all.data() + r * n, n * sizeof(float)), 0)
                    << "rank " << r << " differs, n=" << n;
            }
        }
    }
}

TEST_P(CommunicatorConformance, AllReduceMaxMinAndIntegers) {
    const int p = comm().size();
    const int me = comm().rank();
    for (int64_t chunk : {int64_t{0}, int64_t{2}}) {
        std::unique_ptr<ScopedMpiChunk> guard;
        if (chunk > 0) guard = std::make_unique<ScopedMpiChunk>(chunk);
        std::vector<float> fmax = {static_cast<float>(me), -static_cast<float>(me), 1.5f,
                                   me == p - 1 ? 100.f : -100.f, contribution(me, 3)};
        std::vector<float> fmin = fmax;
        comm().all_reduce_max(host_view(fmax.data(), 5));
        comm().all_reduce(host_view(fmin.data(), 5), ReduceOp::kMin);
        float cmax = contribution(0, 3), cmin = contribution(0, 3);
        for (int r = 1; r < p; ++r) {
            cmax = std::max(cmax, contribution(r, 3));
            cmin = std::min(cmin, contribution(r, 3));
        }
        EXPECT_EQ(fmax, (std::vector<float>{float(p - 1), 0.f, 1.5f, 100.f, cmax}));
        EXPECT_EQ(fmin,
                  (std::vector<float>{0.f, -float(p - 1), 1.5f, p == 1 ? 100.f : -100.f, cmin}));

        std::vector<int32_t> i32 = {me + 1, -me, 7};
        comm().all_reduce_sum(host_view(i32.data(), 3));
        EXPECT_EQ(i32, (std::vector<int32_t>{p * (p + 1) / 2, -p * (p - 1) / 2, 7 * p}));

        // Values beyond 32 bits catch a reduction done in the wrong width.
        const int64_t big = int64_t{1} << 40;
        std::vector<int64_t> i64 = {big * (me + 1), big + me, -big * me};
        std::vector<int64_t> i64max = i64;
        comm().all_reduce_sum(host_view(i64.data(), 3));
        comm().all_reduce_max(host_view(i64max.data(), 3));
        EXPECT_EQ(i64, (std::vector<int64_t>{big * p * (p + 1) / 2, big * p + p * (p - 1) / 2,
                                             -big * p * (p - 1) / 2}));
        EXPECT_EQ(i64max, (std::vector<int64_t>{big * p, big + p - 1, 0}));
    }
}

TEST_P(CommunicatorConformance, AllReduceRejectsUnsupportedDtypes) {
    // Rejected locally, before anything is sent, on every rank alike.
    std::vector<uint16_t> h(4, 0);
    TensorView bf16{h.data(), DType::kBF16, {4}, Device::cpu()};
    EXPECT_THROW(comm().all_reduce_sum(bf16), Error);
    std::vector<uint8_t> u8(4, 0);
    EXPECT_THROW(comm().all_reduce_sum(host_view(u8.data(), 4)), Error);
    // The communicator is still usable afterwards.
    int32_t one = 1;
    comm().all_reduce_sum(host_view(&one, 1));
    EXPECT_EQ(one, comm().size());
}

TEST_P(CommunicatorConformance, AllGatherInRankOrderForAnyDtype) {
    const int p = comm().size();
    const int me = comm().rank();
    for (int64_t chunk : {int64_t{0}, int64_t{5}}) {
        std::unique_ptr<ScopedMpiChunk> guard;
        if (chunk > 0) guard = std::make_unique<ScopedMpiChunk>(chunk);
        for (int64_t n : {0, 1, 3, 17, 4099}) {
            std::vector<uint8_t> in(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) in[i] = static_cast<uint8_t>(me * 37 + i * 11);
            std::vector<uint8_t> out(static_cast<size_t>(n * p), 0xEE);
            comm().all_gather(host_view(in.data(), n), host_view(out.data(), n * p));
            int64_t wrong = 0;
            for (int r = 0; r < p; ++r)
                for (int64_t i = 0; i < n; ++i)
                    wrong += out[r * n + i] != static_cast<uint8_t>(r * 37 + i * 11);
            EXPECT_EQ(wrong, 0) << "u8 n=" << n << " chunk=" << chunk;
        }
        // 2-D f32 [rows, 3] per rank gathered into [p * rows, 3].
        const int64_t rows = 4;
        std::vector<float> in(rows * 3);
        for (int64_t i = 0; i < rows * 3; ++i) in[i] = contribution(me, i);
        std::vector<float> out(rows * 3 * p);
        comm().all_gather(TensorView{in.data(), DType::kF32, {rows, 3}, Device::cpu()},
                          TensorView{out.data(), DType::kF32, {p * rows, 3}, Device::cpu()});
        for (int r = 0; r < p; ++r)
            for (int64_t i = 0; i < rows * 3; ++i)
                EXPECT_EQ(bits(out[r * rows * 3 + i]), bits(contribution(r, i)));
        // In place: `in` is this rank's slot of `out`.
        std::vector<int64_t> inplace(static_cast<size_t>(7 * p), -1);
        for (int64_t i = 0; i < 7; ++i) inplace[me * 7 + i] = (int64_t{me} << 33) + i;
        comm().all_gather(host_view(inplace.data() + me * 7, 7), host_view(inplace.data(), 7 * p));
        for (int r = 0; r < p; ++r)
            for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(inplace[r * 7 + i], (int64_t{r} << 33) + i);
    }
}

TEST_P(CommunicatorConformance, AllGatherRejectsMismatchedBuffers) {
    const int p = comm().size();
    std::vector<float> in(4), out(4 * p + 1);
    EXPECT_THROW(comm().all_gather(host_view(in.data(), 4), host_view(out.data(), 4 * p + 1)),
                 Error);
    std::vector<int32_t> out_i(4 * p);
    EXPECT_THROW(comm().all_gather(host_view(in.data(), 4), host_view(out_i.data(), 4 * p)), Error);
    TensorView gpu{in.data(), DType::kF32, {4}, Device::cuda(0)};
    EXPECT_THROW(comm().all_gather(gpu, host_view(out.data(), 4 * p)), Error);
    TensorView null_in{nullptr, DType::kF32, {4}, Device::cpu()};
    EXPECT_THROW(comm().all_gather(null_in, host_view(out.data(), 4 * p)), Error);
}

TEST_P(CommunicatorConformance, BroadcastFromEveryRoot) {
    const int p = comm().size();
    const int me = comm().rank();
    for (int64_t chunk : {int64_t{0}, int64_t{6}}) {
        std::unique_ptr<ScopedMpiChunk> guard;
        if (chunk > 0) guard = std::make_unique<ScopedMpiChunk>(chunk);
        for (int root = 0; root < p; ++root) {
            for (int64_t n : {0, 1, 29}) {
                std::vector<float> buf(static_cast<size_t>(n), -1.f);
                if (me == root)
                    for (int64_t i = 0; i < n; ++i) buf[i] = contribution(root, i);
                comm().broadcast(host_view(buf.data(), n), root);
                int64_t wrong = 0;
                for (int64_t i = 0; i < n; ++i)
                    wrong += bits(buf[i]) != bits(contribution(root, i));
                EXPECT_EQ(wrong, 0) << "root " << root << " n=" << n << " chunk=" << chunk;
            }
        }
    }
    float x = 0;
    EXPECT_THROW(comm().broadcast(host_view(&x, 1), p), Error);
    EXPECT_THROW(comm().broadcast(host_view(&x, 1), -1), Error);
}

TEST_P(CommunicatorConformance, SendRecvAroundARing) {
    const int p = comm().size();
    const int me = comm().rank();
    std::vector<int32_t> dummy(1);
    EXPECT_THROW(comm().send(host_view(dummy.data(), 1), me), Error);
    EXPECT_THROW(comm().recv(host_view(dummy.data(), 1), p), Error);
    if (p < 2) GTEST_SKIP() << "needs 2 ranks";
    const int next = (me + 1) % p, prev = (me + p - 1) % p;
    for (int64_t chunk : {int64_t{0}, int64_t{4}}) {
        std::unique_ptr<ScopedMpiChunk> guard;
        if (chunk > 0) guard = std::make_unique<ScopedMpiChunk>(chunk);
        for (int64_t n : {0, 1, 10, 2501}) {
            std::vector<int32_t> out(static_cast<size_t>(n)), in(static_cast<size_t>(n), -7);
            for (int64_t i = 0; i < n; ++i) out[i] = me * 100000 + static_cast<int32_t>(i);
            // Even ranks send first, odd ranks receive first: no cycle of waiting senders.
            if (me % 2 == 0) {
                comm().send(host_view(out.data(), n), next);
                comm().recv(host_view(in.data(), n), prev);
            } else {
                comm().recv(host_view(in.data(), n), prev);
                comm().send(host_view(out.data(), n), next);
            }
            int64_t wrong = 0;
            for (int64_t i = 0; i < n; ++i) wrong += in[i] != prev * 100000 + i;
            EXPECT_EQ(wrong, 0) << "n=" << n << " chunk=" << chunk;
        }
    }
}

// Every rank sends and receives in one call around the ring: with blocking send-then-recv
// this deadlocks above the eager limit (1 MiB messages here).
TEST_P(CommunicatorConformance, SendRecvExchangeAroundARingAllSendingAtOnce) {
    const int p = comm().size();
    const int me = comm().rank();
    std::vector<int32_t> dummy(1);
    EXPECT_THROW(comm().sendrecv(host_view(dummy.data(), 1), me, host_view(dummy.data(), 1), p),
                 Error);
    if (p < 2) GTEST_SKIP() << "needs 2 ranks";
    const int next = (me + 1) % p, prev = (me + p - 1) % p;
    for (int64_t chunk : {int64_t{0}, int64_t{4}}) {
        std::unique_ptr<ScopedMpiChunk> guard;
        if (chunk > 0) guard = std::make_unique<ScopedMpiChunk>(chunk);
        for (int64_t n : {int64_t{0}, int64_t{3}, chunk > 0 ? int64_t{999} : int64_t{1} << 18}) {
            std::vector<int32_t> out(static_cast<size_t>(n)), in(static_cast<size_t>(n), -7);
            for (int64_t i = 0; i < n; ++i) out[i] = me * 100000 + static_cast<int32_t>(i % 1000);
            comm().sendrecv(host_view(out.data(), n), next, host_view(in.data(), n), prev);
            int64_t wrong = 0;
            for (int64_t i = 0; i < n; ++i) wrong += in[i] != prev * 100000 + i % 1000;
            EXPECT_EQ(wrong, 0) << "n=" << n << " chunk=" << chunk;
        }
    }
}

TEST_P(CommunicatorConformance, RecvOfTheWrongLengthThrows) {
    if (comm().size() < 2) GTEST_SKIP() << "needs 2 ranks";
    std::vector<int32_t> buf(8, 0);
    if (comm().rank() == 0) {
        comm().send(host_view(buf.data(), 4), 1);  // 16 bytes
    } else if (comm().rank() == 1) {
        EXPECT_THROW(comm().recv(host_view(buf.data(), 8), 0), Error);  // expects 32
    }
    comm().barrier();
}

TEST_P(CommunicatorConformance, BarrierWaitsForTheSlowestRank) {
    using Clock = std::chrono::steady_clock;
    comm().barrier();
    int64_t before_ns = 0;
    if (comm().rank() == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        before_ns = Clock::now().time_since_epoch().count();
    }
    comm().barrier();
    int64_t after_ns = Clock::now().time_since_epoch().count();
    // steady_clock is CLOCK_MONOTONIC, shared by the processes of one machine.
    comm().broadcast_value(before_ns, 0);
    EXPECT_GE(after_ns, before_ns);
}

TEST_P(CommunicatorConformance, SplitByColorOrdersByKeyThenRank) {
    const int p = comm().size();
    const int me = comm().rank();
    // Two colors (even/odd), keys reversed: the child's rank 0 is the highest old rank.
    auto child = comm().split(me % 2, -me);
    ASSERT_NE(child, nullptr);  // every rank has a color, so no rank returns early here
    std::vector<int32_t> members;
    for (int r = p - 1; r >= 0; --r)
        if (r % 2 == me % 2) members.push_back(r);
    EXPECT_EQ(child->size(), static_cast<int>(members.size()));
    EXPECT_EQ(child->rank(),
              static_cast<int>(std::find(members.begin(), members.end(), me) - members.begin()));
    EXPECT_EQ(child->timeout(), comm().timeout());
    std::vector<int32_t> got(members.size());
    int32_t me32 = me;
    child->all_gather(host_view(&me32, 1), host_view(got.data(), child->size()));
    EXPECT_EQ(got, members);
    int32_t sum = me;
    child->all_reduce_sum(host_view(&sum, 1));
    EXPECT_EQ(sum, std::accumulate(members.begin(), members.end(), 0));

    // Negative color: not a member. Equal keys: old rank order.
    auto partial = comm().split(me == p - 1 ? -1 : 5, 0);
    EXPECT_EQ(partial == nullptr, me == p - 1);
    if (partial) {
        EXPECT_EQ(partial->size(), p - 1);
        EXPECT_EQ(partial->rank(), me);
        partial->barrier();
    }
    // A split of a split.
    auto grand = child->split(0, child->rank());
    ASSERT_NE(grand, nullptr);
    EXPECT_EQ(grand->size(), child->size());
    EXPECT_EQ(grand->rank(), child->rank());
}

struct Pod {
    int32_t a;
    double b;
    char tag[5];
};

TEST_P(CommunicatorConformance, TypedBroadcastHelpers) {
    const int p = comm().size();
    const int me = comm().rank();
    for (int64_t chunk : {int64_t{0}, int64_t{7}}) {
        std::unique_ptr<ScopedMpiChunk> guard;
        if (chunk > 0) guard = std::make_unique<ScopedMpiChunk>(chunk);
        for (int root = 0; root < p; ++root) {
            const bool is_root = me == root;
            Pod pod{is_root ? 42 + root : -1,
                    is_root ? 0.25 * root : -1.0,
                    {'x', 'y', 'z', is_root ? char('0' + root) : '?', 0}};
            comm().broadcast_value(pod, root);
            EXPECT_EQ(pod.a, 42 + root);
            EXPECT_EQ(pod.b, 0.25 * root);
            EXPECT_EQ(std::string(pod.tag), std::string("xyz") + char('0' + root));

            std::vector<int32_t> v;
            if (is_root)
                v.assign(static_cast<size_t>(root * 5 + 3), root);
            else
                v.assign(100, -5);
            comm().broadcast_vector(v, root);
            EXPECT_EQ(v, std::vector<int32_t>(static_cast<size_t>(root * 5 + 3), root));

            std::vector<int32_t> empty;
            if (!is_root) empty.assign(3, 9);
            comm().broadcast_vector(empty, root);
            EXPECT_TRUE(empty.empty());

            std::string s = is_root ? std::string("config: a\0b", 11) + std::string(300, 'q')
                                    : std::string("junk");
            comm().broadcast_string(s, root);
            EXPECT_EQ(s, std::string("config: a\0b", 11) + std::string(300, 'q'));
        }
    }
}

TEST_P(CommunicatorConformance, PointToPointStringAndVectorHelpers) {
    if (comm().size() < 2) GTEST_SKIP() << "needs 2 ranks";
    const int p = comm().size();
    const int me = comm().rank();
    // The coordinator sends each rank its own work item; ranks reply with a vector.
    if (me == 0) {
        for (int r = 1; r < p; ++r) comm().send_string("job for rank " + std::to_string(r), r);
        comm().send_string("", 1);
        for (int r = 1; r < p; ++r) {
            auto reply = comm().recv_vector<int64_t>(r);
            EXPECT_EQ(reply, (std::vector<int64_t>{r, int64_t{r} << 35}));
        }
    } else {
        EXPECT_EQ(comm().recv_string(0), "job for rank " + std::to_string(me));
        if (me == 1) {
            EXPECT_EQ(comm().recv_string(0), "");
        }
        comm().send_vector(std::vector<int64_t>{me, int64_t{me} << 35}, 0);
    }
    comm().barrier();
}

TEST_P(CommunicatorConformance, TimeoutIsValidatedAndInherited) {
    const double saved = comm().timeout();
    EXPECT_THROW(comm().set_timeout(-1), Error);
    EXPECT_EQ(comm().timeout(), saved);
    comm().set_timeout(123.5);
    auto child = comm().split(0, comm().rank());
    EXPECT_EQ(child->timeout(), 123.5);
    comm().set_timeout(saved);
    EXPECT_TRUE(all_ranks_agree(comm(), true));
    EXPECT_FALSE(all_ranks_agree(comm(), comm().rank() != comm().size() - 1));
}

// For every (tp, mp) layout of this world: the three communicators of make_group_communicators
// contain exactly the ranks World says, in World's order.
TEST_P(CommunicatorConformance, GroupCommunicatorsMatchWorldForEveryLayout) {
    const int p = comm().size();
    for (int tp = 1; tp <= p; ++tp) {
        for (int mp = 1; tp * mp <= p; ++mp) {
            if (p % (tp * mp) != 0) continue;
            World w(p, comm().rank(), tp, mp);
            GroupCommunicators g = make_group_communicators(w, comm());
            SCOPED_TRACE(w.describe());
            int32_t me = comm().rank();
            std::vector<int32_t> tp_ranks(tp), mp_ranks(mp);
            g.tp->all_gather(host_view(&me, 1), host_view(tp_ranks.data(), tp));
            g.mp->all_gather(host_view(&me, 1), host_view(mp_ranks.data(), mp));
            auto expect_tp = w.tp_group_ranks();
            auto expect_mp = w.mp_group_ranks();
            EXPECT_EQ(std::vector<int>(tp_ranks.begin(), tp_ranks.end()), expect_tp);
            EXPECT_EQ(std::vector<int>(mp_ranks.begin(), mp_ranks.end()), expect_mp);
            EXPECT_EQ(g.leaders != nullptr, w.is_group_leader());
            if (g.leaders) {
                std::vector<int32_t> leaders(w.dp());
                g.leaders->all_gather(host_view(&me, 1), host_view(leaders.data(), w.dp()));
                EXPECT_EQ(std::vector<int>(leaders.begin(), leaders.end()), w.dp_leader_ranks());
                EXPECT_EQ(g.leaders->rank(), w.group());
            }
        }
    }
}

}  // namespace
}  // namespace fot::parallel::testing
