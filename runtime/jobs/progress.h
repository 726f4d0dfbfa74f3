// Progress: the progress line of a corpus job, on rank 0 (stderr).
//
// "batch: 120/1000 documents (3 errors), 45.2k tokens/s, ETA 3m12s". On a terminal the line
// is redrawn in place at most twice a second; otherwise (a log file, a Slurm output) a plain
// log line is written every `interval_s` seconds, so logs stay readable. The ETA assumes the
// remaining documents go at the rate seen so far, measured in estimated tokens (the corpus'
// size hints), so long documents weigh as they should.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/timer.h"

namespace fot {

class Progress {
  public:
    // `total_docs` and `total_cost` (estimated tokens) are what this run has to do.
    // interval_s <= 0 disables the plain lines (a terminal still gets its line); `quiet`
    // (--quiet) disables both.
    Progress(std::string label, int64_t total_docs, int64_t total_cost, double interval_s,
             bool quiet = false);

    // Totals so far in this run: documents finished (errors included), estimated tokens of
    // those documents, tokens actually processed, error records.
    void update(int64_t docs, int64_t cost, int64_t tokens, int64_t errors);
    // Prints the final state (ends the terminal line).
    void finish();

    // "45.2k", "1.3M", "870" (durations: ProgressLine::format_duration).
    static std::string format_rate(double per_second);

  private:
    std::string line() const;
    void print(bool final);

    std::string label_;
    int64_t total_docs_, total_cost_;
    double interval_s_;
    bool tty_;
    Timer timer_;
    double last_print_ = -1e9;
    int64_t docs_ = 0, cost_ = 0, tokens_ = 0, errors_ = 0;
    bool printed_tty_ = false;
    bool quiet_ = false;
};

}  // namespace fot
