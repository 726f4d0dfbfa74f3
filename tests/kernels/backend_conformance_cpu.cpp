// The backend conformance suite (backend_conformance.h) on CpuBackend, against the naive
// scalar references: CpuBackend is every other backend's reference, so it is checked against
// math written in the test, never against itself.
#include "tests/kernels/backend_conformance.h"

namespace fot::testing {

FOT_INSTANTIATE_BACKEND_CONFORMANCE(cpu_backend_maker());

}  // namespace fot::testing
