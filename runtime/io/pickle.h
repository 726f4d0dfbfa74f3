// A restricted unpickler for the data.pkl of a torch.save archive (a state dict).
//
// It runs only the opcodes torch.save emits with pickle protocol 2 (plus the harmless
// protocol-4 FRAME, MEMOIZE, SHORT_BINUNICODE and BINUNICODE8), and resolves only these
// globals: collections.OrderedDict, torch._utils._rebuild_tensor_v2 and the typed storage
// classes torch.{Float,BFloat16,Half,Int,Long,Byte}Storage. Other storage classes
// (torch.DoubleStorage, ...) are rejected as unsupported; any other opcode or global is an
// error that names it, its byte position and `origin`. Nothing is ever executed or imported:
// REDUCE is interpreted only for the allowed callables, and persistent ids only as
// ("storage", <storage class>, key, location, numel). Objects live in an arena owned by the
// parse, so self-references or deep nesting in a malicious pickle cannot crash or leak; at
// most 8M objects, and every byte the parse keeps (objects, stack, memo, strings, tensor
// shapes) counts against a budget of 64 MiB + 16 bytes per pickle byte, so a small pickle that
// reuses one huge object many times is refused instead of growing without bound.
//
// The result must be a dict (or OrderedDict; its _metadata attribute is ignored) mapping
// unique string names to tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"

namespace fot {

struct PickledTensor {
    std::string name;
    std::string storage_key;  // the archive entry is <top>/data/<storage_key>
    DType dtype = DType::kF32;
    uint64_t storage_numel = 0;  // elements in the whole storage
    int64_t storage_offset = 0;  // in elements
    Shape shape;
    std::vector<int64_t> stride;  // in elements
};

// Parses a pickled state dict. Tensors are returned in pickle order. Throws fot::Error.
std::vector<PickledTensor> unpickle_state_dict(const uint8_t* data, size_t size,
                                               const std::string& origin);

}  // namespace fot
