// libFuzzer target: the run YAML and the job YAML readers (config/run_config.h) on the same
// bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/run_config.h"
#include "runtime/core/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    static const std::set<std::string> kJobKeys = {"task", "input", "output", "max_new_tokens"};
    try {  // Results: errors are values; a fot::Error is also a clean one-line error
        (void)fot::parse_run_config(text, "fuzz.yaml");
        (void)fot::parse_job_yaml(text, "fuzz.yaml", kJobKeys);
    } catch (const fot::Error&) {
    }
    return 0;
}
