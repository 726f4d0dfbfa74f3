// libFuzzer target: config.json -> ModelConfig (config/model_config.h), checks included.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/model_config.h"
#include "runtime/core/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        (void)fot::parse_model_config(text, "fuzz/config.json");  // a Result: errors are values
    } catch (const fot::Error&) {
    }
    return 0;
}
