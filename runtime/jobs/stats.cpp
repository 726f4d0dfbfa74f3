#include "runtime/jobs/stats.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace fot {
namespace {
constexpr int kFields = 10;
}

nlohmann::json collect_rank_stats(Session& s) {
    const LongLlama& m = *s.model;
    const MemoryAttentionStats& st = m.memory_stats();
    const double mine[kFields] = {static_cast<double>(s.world.rank()),
                                  static_cast<double>(s.world.tp_rank()),
                                  static_cast<double>(s.world.mp_rank()),
                                  static_cast<double>(s.seq->memory_tokens_local()),
                                  static_cast<double>(s.seq->memory().used_bytes()),
                                  static_cast<double>(st.gathered_bytes),
                                  static_cast<double>(st.steps),
                                  st.score_seconds,
                                  st.select_seconds,
                                  st.merge_seconds};
    // Doubles travel as pairs of floats would lose precision: send them as i64 bit patterns.
    std::vector<int64_t> bits(kFields), all(static_cast<size_t>(kFields) * s.world_comm->size());
    std::memcpy(bits.data(), mine, sizeof(mine));
    if (s.world_comm->size() > 1) {
        s.world_comm->all_gather(parallel::host_view(bits.data(), kFields),
                                 parallel::host_view(all.data(), static_cast<int64_t>(all.size())));
    } else {
        all = bits;
    }
    nlohmann::json out = nlohmann::json::array();
    for (int r = 0; r < s.world_comm->size(); ++r) {
        double f[kFields];
        std::memcpy(f, all.data() + r * kFields, sizeof(f));
        const int64_t steps = static_cast<int64_t>(f[6]);
        out.push_back(
            {{"rank", static_cast<int>(f[0])},
             {"tp_rank", static_cast<int>(f[1])},
             {"mp_rank", static_cast<int>(f[2])},
             {"memory_tokens", static_cast<int64_t>(f[3])},
             {"memory_bytes", static_cast<int64_t>(f[4])},
             {"allgather_bytes", static_cast<int64_t>(f[5])},
             {"memory_attention_steps", steps},
             {"allgather_bytes_per_step", steps > 0 ? static_cast<int64_t>(f[5]) / steps : 0},
             {"score_seconds", f[7]},
             {"select_seconds", f[8]},
             {"merge_seconds", f[9]}});
    }
    return out;
}

std::string format_rank_stats(const nlohmann::json& stats) {
    std::string out =
        "rank tp mp  memory_tokens  memory_MiB  allgather_MiB  bytes/step   score_s  select_s  "
        "merge_s\n";
    char line[256];
    for (const auto& r : stats) {
        std::snprintf(line, sizeof(line),
                      "%4d %2d %2d %14lld %11.2f %14.2f %11lld %9.3f %9.3f %8.3f\n",
                      r["rank"].get<int>(), r["tp_rank"].get<int>(), r["mp_rank"].get<int>(),
                      static_cast<long long>(r["memory_tokens"].get<int64_t>()),
                      r["memory_bytes"].get<int64_t>() / 1048576.0,
                      r["allgather_bytes"].get<int64_t>() / 1048576.0,
                      static_cast<long long>(r["allgather_bytes_per_step"].get<int64_t>()),
                      r["score_seconds"].get<double>(), r["select_seconds"].get<double>(),
                      r["merge_seconds"].get<double>());
        out += line;
    }
    return out;
}

}  // namespace fot
