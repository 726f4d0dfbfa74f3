// libFuzzer target: the --ids file parser (a flat JSON list of token ids).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runtime/core/status.h"
#include "runtime/jobs/corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        fot::parse_ids_json(std::string_view(reinterpret_cast<const char*>(data), size),
                            "fuzz.json");
    } catch (const fot::Error&) {
    }
    return 0;
}
