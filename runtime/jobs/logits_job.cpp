#include "runtime/jobs/logits_job.h"

#include <cstdio>
#include <filesystem>
#include <memory>

#include "runtime/core/progress.h"
#include "runtime/core/status.h"
#include "runtime/core/temp_files.h"
#include "runtime/core/timer.h"

namespace fot {

LogitsJobResult run_logits_job(Session& s, const std::vector<int32_t>& ids,
                               const std::string& out_path) {
    Timer timer;
    const int64_t V = s.model_config.vocab_size;
    const std::string tmp = out_path + ".partial";
    std::unique_ptr<FILE, int (*)(FILE*)> f(nullptr, &std::fclose);
    TempFileGuard guard(tmp);  // a SIGTERM while writing removes it (runtime/core/temp_files.h)
    if (s.is_root()) {
        f.reset(std::fopen(tmp.c_str(), "wb"));
        FOT_CHECK(f, "cannot write logits to ", out_path, " (", tmp, " could not be created)");
    }
    s.seq->reset();
    ProgressLine progress("prefill", "tokens", static_cast<int64_t>(ids.size()),
                          s.is_root() && !s.run.quiet);
    ForwardOptions opts;
    opts.logits = LogitsRows::kAll;
    opts.before_window = [&](int64_t row0) { progress.update(row0); };
    opts.on_logits = [&](int64_t, TensorView local) {
        std::vector<float> rows = s.gather_vocab(local);
        if (f) {
            FOT_CHECK(std::fwrite(rows.data(), sizeof(float), rows.size(), f.get()) == rows.size(),
                      "write error on ", tmp, " (disk full?)");
        }
    };
    try {
        s.model->forward(*s.seq, ids, opts);
    } catch (...) {
        if (f) {
            f.reset();
            std::remove(tmp.c_str());
        }
        throw;
    }
    progress.update(static_cast<int64_t>(ids.size()));
    progress.finish();
    if (f) {
        FOT_CHECK(std::fflush(f.get()) == 0, "write error on ", tmp);
        f.reset();
        std::filesystem::rename(tmp, out_path);
    }
    return {static_cast<int64_t>(ids.size()), V, timer.seconds()};
}

}  // namespace fot
