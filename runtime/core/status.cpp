#include "runtime/core/status.h"

namespace fot::detail {

void throw_assert(const char* expr, const char* file, int line) {
    throw Error(
        str("internal error (fotrt bug): assertion '", expr, "' failed at ", file, ":", line));
}

}  // namespace fot::detail
