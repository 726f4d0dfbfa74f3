// libFuzzer target: one JSONL corpus record (runtime/jobs/corpus.h). A bad record never
// throws: it must come back with `error` set, and the error must be one line of valid UTF-8
// (it is written into an error record).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "runtime/io/quote.h"
#include "runtime/jobs/corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fot::Document d;
    fot::parse_jsonl_record(std::string_view(reinterpret_cast<const char*>(data), size),
                            /*vocab_size=*/32000, d);
    if (d.error.find('\n') != std::string::npos) std::abort();
    if (fot::escape_invalid_utf8(d.error) != d.error) std::abort();
    return 0;
}
