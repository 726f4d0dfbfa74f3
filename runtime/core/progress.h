// ProgressLine: a progress report on stderr for one long piece of work (model load, a
// prefill, decoding, passkey trials), so that a 30-second prefill is not 30 seconds of
// silence.
//
// "prefill: 12.3k/26.0k tokens, 710 tokens/s, elapsed 17s, ETA 19s". On a terminal (stderr
// isatty) the line is redrawn in place with '\r' at most twice a second and ended with a
// newline by finish(); otherwise (a log file, a Slurm output) a plain log line is written
// every interval seconds, and a final one by finish() only when a periodic line was written,
// so short work stays silent in logs. A disabled line (not rank 0, --quiet) prints nothing.
//
// The plain-line interval is 5 s; the environment variable FOT_PROGRESS_INTERVAL (seconds,
// > 0) overrides it, so that tests can see the lines on small inputs.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/timer.h"

namespace fot {

class ProgressLine {
  public:
    // `unit` names what `total` counts ("tokens", "layers", "trials").
    ProgressLine(std::string label, std::string unit, int64_t total, bool enabled);
    ~ProgressLine();
    ProgressLine(const ProgressLine&) = delete;
    ProgressLine& operator=(const ProgressLine&) = delete;

    // `done` of `total` finished so far (cheap when nothing is due to print).
    void update(int64_t done);
    // Prints the final state when due (see above); called by the destructor otherwise.
    void finish();

    // The plain-line interval: FOT_PROGRESS_INTERVAL when set and valid, else 5 s.
    static double default_interval();
    // "3m12s", "1h02m", "45s"; "?" for a negative or non-finite value.
    static std::string format_duration(double seconds);
    // "45.2k", "1.3M", "870".
    static std::string format_count(double value);

  private:
    std::string text() const;
    void print(bool final);

    std::string label_, unit_;
    int64_t total_;
    bool enabled_, tty_;
    double interval_s_;
    Timer timer_;
    double last_print_ = 0.0;  // the first line comes after one interval
    int64_t done_ = 0;
    bool printed_ = false, finished_ = false;
};

}  // namespace fot
