// libFuzzer target: the restricted unpickler of torch .bin checkpoints (runtime/io/pickle.h).
#include <cstddef>
#include <cstdint>

#include "runtime/core/status.h"
#include "runtime/io/pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        fot::unpickle_state_dict(data, size, "fuzz.bin: archive/data.pkl");
    } catch (const fot::Error&) {
    }
    return 0;
}
