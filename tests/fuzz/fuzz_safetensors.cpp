// libFuzzer target: the safetensors header parser (runtime/io/safetensors.h) on arbitrary
// file bytes. Any crash, sanitizer report or exception other than fot::Error is a finding.
#include <cstddef>
#include <cstdint>

#include "runtime/core/status.h"
#include "runtime/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        fot::parse_safetensors(data, size, "fuzz.safetensors");
    } catch (const fot::Error&) {
    }
    return 0;
}
