#include "runtime/io/pickle.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <set>
#include <unordered_map>
#include <utility>

#include "runtime/core/status.h"
#include "runtime/io/quote.h"

namespace fot {
namespace {

enum class Kind {
    kNone,
    kBool,
    kInt,
    kStr,
    kTuple,
    kList,
    kDict,
    kCallable,
    kStorageType,
    kStorage,
    kTensor
};

enum class Callable { kOrderedDict, kRebuildTensorV2 };

const char* kind_name(Kind k) {
    switch (k) {
        case Kind::kNone:
            return "None";
        case Kind::kBool:
            return "bool";
        case Kind::kInt:
            return "int";
        case Kind::kStr:
            return "str";
        case Kind::kTuple:
            return "tuple";
        case Kind::kList:
            return "list";
        case Kind::kDict:
            return "dict";
        case Kind::kCallable:
            return "callable";
        case Kind::kStorageType:
            return "storage class";
        case Kind::kStorage:
            return "storage";
        case Kind::kTensor:
            return "tensor";
    }
    return "?";
}

// One unpickled object. All objects are owned by the parse's arena; links are raw pointers.
struct Obj {
    Kind kind = Kind::kNone;
    int64_t i = 0;  // bool, int
    std::string s;  // str; qualified name of a callable/storage class
    Callable callable = Callable::kOrderedDict;
    DType dtype = DType::kF32;                // storage class, storage
    std::vector<Obj*> items;                  // tuple, list
    std::vector<std::pair<Obj*, Obj*>> dict;  // dict, in insertion order
    size_t tensor = 0;                        // storage, tensor: index into tensors_
};

// The pickle opcodes, named as in Python's pickletools, for error messages.
const char* opcode_name(uint8_t op) {
    switch (op) {
        case '(':
            return "MARK";
        case '.':
            return "STOP";
        case '0':
            return "POP";
        case '1':
            return "POP_MARK";
        case '2':
            return "DUP";
        case 'F':
            return "FLOAT";
        case 'I':
            return "INT";
        case 'J':
            return "BININT";
        case 'K':
            return "BININT1";
        case 'L':
            return "LONG";
        case 'M':
            return "BININT2";
        case 'N':
            return "NONE";
        case 'P':
            return "PERSID";
        case 'Q':
            return "BINPERSID";
        case 'R':
            return "REDUCE";
        case 'S':
            return "STRING";
        case 'T':
            return "BINSTRING";
        case 'U':
            return "SHORT_BINSTRING";
        case 'V':
            return "UNICODE";
        case 'X':
            return "BINUNICODE";
        case 'a':
            return "APPEND";
        case 'b':
            return "BUILD";
        case 'c':
            return "GLOBAL";
        case 'd':
            return "DICT";
        case '}':
            return "EMPTY_DICT";
        case 'e':
            return "APPENDS";
        case 'g':
            return "GET";
        case 'h':
            return "BINGET";
        case 'i':
            return "INST";
        case 'j':
            return "LONG_BINGET";
        case 'l':
            return "LIST";
        case ']':
            return "EMPTY_LIST";
        case 'o':
            return "OBJ";
        case 'p':
            return "PUT";
        case 'q':
            return "BINPUT";
        case 'r':
            return "LONG_BINPUT";
        case 's':
            return "SETITEM";
        case 't':
            return "TUPLE";
        case ')':
            return "EMPTY_TUPLE";
        case 'u':
            return "SETITEMS";
        case 'G':
            return "BINFLOAT";
        case 'B':
            return "BINBYTES";
        case 'C':
            return "SHORT_BINBYTES";
        case 0x80:
            return "PROTO";
        case 0x81:
            return "NEWOBJ";
        case 0x82:
            return "EXT1";
        case 0x83:
            return "EXT2";
        case 0x84:
            return "EXT4";
        case 0x85:
            return "TUPLE1";
        case 0x86:
            return "TUPLE2";
        case 0x87:
            return "TUPLE3";
        case 0x88:
            return "NEWTRUE";
        case 0x89:
            return "NEWFALSE";
        case 0x8a:
            return "LONG1";
        case 0x8b:
            return "LONG4";
        case 0x8c:
            return "SHORT_BINUNICODE";
        case 0x8d:
            return "BINUNICODE8";
        case 0x8e:
            return "BINBYTES8";
        case 0x8f:
            return "EMPTY_SET";
        case 0x90:
            return "ADDITEMS";
        case 0x91:
            return "FROZENSET";
        case 0x92:
            return "NEWOBJ_EX";
        case 0x93:
            return "STACK_GLOBAL";
        case 0x94:
            return "MEMOIZE";
        case 0x95:
            return "FRAME";
        case 0x96:
            return "BYTEARRAY8";
        case 0x97:
            return "NEXT_BUFFER";
        case 0x98:
            return "READONLY_BUFFER";
        default:
            return nullptr;
    }
}

constexpr size_t kMaxObjects = size_t{8} << 20;
// The object cap alone does not bound memory: a few bytes of pickle can push a memoized
// object again, or rebuild a tensor whose size tuple (or storage key) is megabytes long. So
// every byte the parse keeps is charged against a budget that grows with the input: a real
// state dict uses a few times its pickle size.
constexpr size_t kBaseBudgetBytes = size_t{64} << 20;
constexpr size_t kBudgetPerInputByte = 16;

class Unpickler {
  public:
    Unpickler(const uint8_t* data, size_t size, const std::string& origin)
        : p_(data),
          size_(size),
          origin_(origin),
          budget_(kBaseBudgetBytes + std::min(size, SIZE_MAX / 32) * kBudgetPerInputByte) {}

    Obj* run();
    const PickledTensor& tensor(size_t i) const { return tensors_[i]; }

  private:
    [[noreturn]] void fail(const std::string& what) const {
        FOT_THROW(origin_, ": ", what, " at byte ", op_pos_);
    }
    const uint8_t* take(size_t n) {
        if (n > size_ - pos_) fail("pickle is truncated");
        const uint8_t* r = p_ + pos_;
        pos_ += n;
        return r;
    }
    uint64_t read_le(size_t n) {
        const uint8_t* b = take(n);
        uint64_t v = 0;
        for (size_t k = n; k-- > 0;) v = (v << 8) | b[k];
        return v;
    }
    std::string read_line() {
        size_t start = pos_;
        while (pos_ < size_ && p_[pos_] != '\n') {
            if (pos_ - start > 256) fail("GLOBAL name is too long");
            ++pos_;
        }
        if (pos_ >= size_) fail("pickle is truncated");
        std::string s(reinterpret_cast<const char*>(p_ + start), pos_ - start);
        ++pos_;  // the newline
        return s;
    }
    void charge(size_t bytes) {
        if (bytes > budget_ - used_) {
            fail(str("pickle needs more than ", budget_,
                     " bytes of memory to read (not a plain state dict?)"));
        }
        used_ += bytes;
    }
    Obj* make(Kind k) {
        // Bounds memory for a hostile pickle; a real state dict needs ~15 objects per tensor.
        if (arena_.size() >= kMaxObjects) fail(str("pickle has over ", kMaxObjects, " objects"));
        charge(sizeof(Obj));
        arena_.emplace_back();
        arena_.back().kind = k;
        return &arena_.back();
    }
    Obj* make_int(int64_t v) {
        Obj* o = make(Kind::kInt);
        o->i = v;
        return o;
    }
    void push(Obj* o) {
        charge(sizeof(Obj*));
        stack_.push_back(o);
    }
    Obj* pop() {
        if (stack_.size() <= mark_floor()) fail("pickle stack underflow");
        Obj* o = stack_.back();
        stack_.pop_back();
        return o;
    }
    Obj* top() {
        if (stack_.size() <= mark_floor()) fail("pickle stack underflow");
        return stack_.back();
    }
    size_t mark_floor() const { return marks_.empty() ? 0 : marks_.back(); }
    // Pops everything above the last MARK, and the mark.
    std::vector<Obj*> pop_mark() {
        if (marks_.empty()) fail("pickle has no MARK to pop to");
        size_t m = marks_.back();
        marks_.pop_back();
        std::vector<Obj*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
        stack_.resize(m);
        return items;
    }
    Obj* make_tuple(std::vector<Obj*> items) {
        Obj* t = make(Kind::kTuple);
        t->items = std::move(items);
        return t;
    }
    void memo_put(uint64_t idx) {
        charge(4 * sizeof(void*));  // an unordered_map node
        memo_[idx] = top();
    }
    Obj* memo_get(uint64_t idx) {
        auto it = memo_.find(idx);
        if (it == memo_.end()) fail(str("memo key ", idx, " is not defined"));
        return it->second;
    }
    Obj* resolve_global(const std::string& module, const std::string& name);
    Obj* reduce(Obj* callable, Obj* args);
    Obj* persistent_load(Obj* pid);
    void set_items(Obj* dict, const std::vector<Obj*>& kv);

    const uint8_t* p_;
    size_t size_;
    size_t pos_ = 0;
    size_t op_pos_ = 0;
    const std::string& origin_;
    std::deque<Obj> arena_;
    std::vector<PickledTensor> tensors_;  // of storage and tensor objects
    std::vector<Obj*> stack_;
    std::vector<size_t> marks_;
    std::unordered_map<uint64_t, Obj*> memo_;
    size_t budget_;
    size_t used_ = 0;
};

Obj* Unpickler::resolve_global(const std::string& module, const std::string& name) {
    if (module == "collections" && name == "OrderedDict") {
        Obj* o = make(Kind::kCallable);
        o->callable = Callable::kOrderedDict;
        o->s = "collections.OrderedDict";
        return o;
    }
    if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
        Obj* o = make(Kind::kCallable);
        o->callable = Callable::kRebuildTensorV2;
        o->s = "torch._utils._rebuild_tensor_v2";
        return o;
    }
    if (module == "torch" && name.size() > 7 && name.ends_with("Storage")) {
        static const std::pair<const char*, DType> kSupported[] = {
            {"FloatStorage", DType::kF32}, {"BFloat16Storage", DType::kBF16},
            {"HalfStorage", DType::kF16},  {"IntStorage", DType::kI32},
            {"LongStorage", DType::kI64},  {"ByteStorage", DType::kU8}};
        for (const auto& [n, dt] : kSupported) {
            if (name == n) {
                Obj* o = make(Kind::kStorageType);
                o->dtype = dt;
                o->s = "torch." + name;
                return o;
            }
        }
        static const char* const kKnown[] = {
            "DoubleStorage",       "ShortStorage",         "CharStorage",     "BoolStorage",
            "ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage",    "QUInt8Storage",
            "QInt32Storage",       "QUInt4x2Storage",      "QUInt2x4Storage", "UntypedStorage"};
        for (const char* n : kKnown) {
            if (name == n) {
                fail(str("storage type torch.", name,
                         " is not supported (tensors must be float32, bfloat16 or float16)"));
            }
        }
    }
    fail(str("pickle global ", safe_quote(module + "." + name),
             " is not allowed (only collections.OrderedDict, torch._utils._rebuild_tensor_v2 "
             "and torch.*Storage)"));
}

Obj* Unpickler::persistent_load(Obj* pid) {
    // torch.save: ("storage", storage class, key, location, numel)
    if (pid->kind != Kind::kTuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::kStr ||
        pid->items[0]->s != "storage" || pid->items[1]->kind != Kind::kStorageType ||
        pid->items[2]->kind != Kind::kStr || pid->items[3]->kind != Kind::kStr ||
        pid->items[4]->kind != Kind::kInt || pid->items[4]->i < 0) {
        fail("persistent id is not ('storage', <storage class>, key, location, numel)");
    }
    Obj* s = make(Kind::kStorage);
    s->dtype = pid->items[1]->dtype;
    charge(sizeof(PickledTensor) + pid->items[2]->s.size());
    PickledTensor info;
    info.dtype = s->dtype;
    info.storage_key = pid->items[2]->s;
    info.storage_numel = static_cast<uint64_t>(pid->items[4]->i);
    s->tensor = tensors_.size();
    tensors_.push_back(std::move(info));
    return s;
}

Obj* Unpickler::reduce(Obj* callable, Obj* args) {
    if (callable->kind != Kind::kCallable) {
        fail(str("REDUCE applied to a ", kind_name(callable->kind), ", not an allowed callable"));
    }
    if (args->kind != Kind::kTuple) fail("REDUCE arguments are not a tuple");
    const auto& a = args->items;
    if (callable->callable == Callable::kOrderedDict) {
        if (!a.empty()) fail("collections.OrderedDict called with arguments");
        return make(Kind::kDict);
    }
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
    //                    backward_hooks[, metadata])
    auto int_tuple = [&](Obj* o, const char* what) {
        if (o->kind != Kind::kTuple) fail(str("_rebuild_tensor_v2: ", what, " is not a tuple"));
        std::vector<int64_t> v;
        for (Obj* e : o->items) {
            if (e->kind != Kind::kInt || e->i < 0) {
                fail(str("_rebuild_tensor_v2: ", what, " holds a non-integer or negative value"));
            }
            v.push_back(e->i);
        }
        return v;
    };
    if (a.size() != 6 && a.size() != 7) {
        fail(str("_rebuild_tensor_v2 called with ", a.size(), " arguments (expected 6 or 7)"));
    }
    if (a[0]->kind != Kind::kStorage) fail("_rebuild_tensor_v2: argument 1 is not a storage");
    if (a[1]->kind != Kind::kInt || a[1]->i < 0) {
        fail("_rebuild_tensor_v2: storage offset is not a non-negative integer");
    }
    Obj* t = make(Kind::kTensor);
    const PickledTensor& storage = tensors_[a[0]->tensor];
    if (a[2]->kind == Kind::kTuple && a[3]->kind == Kind::kTuple) {
        charge(sizeof(PickledTensor) + storage.storage_key.size() +
               (a[2]->items.size() + a[3]->items.size()) * sizeof(int64_t));
    }
    PickledTensor info = storage;
    info.storage_offset = a[1]->i;
    info.shape = int_tuple(a[2], "size");
    info.stride = int_tuple(a[3], "stride");
    const bool same_rank = info.shape.size() == info.stride.size();
    t->tensor = tensors_.size();
    tensors_.push_back(std::move(info));
    if (!same_rank) {
        fail("_rebuild_tensor_v2: size and stride have different lengths");
    }
    return t;
}

void Unpickler::set_items(Obj* dict, const std::vector<Obj*>& kv) {
    if (dict->kind != Kind::kDict) fail(str("SETITEM(S) on a ", kind_name(dict->kind)));
    if (kv.size() % 2 != 0) fail("SETITEMS with an odd number of items");
    charge(kv.size() * sizeof(Obj*));
    for (size_t k = 0; k < kv.size(); k += 2) dict->dict.emplace_back(kv[k], kv[k + 1]);
}

Obj* Unpickler::run() {
    while (true) {
        op_pos_ = pos_;
        const uint8_t op = *take(1);
        switch (op) {
            case 0x80: {  // PROTO
                const uint8_t v = *take(1);
                if (v < 2 || v > 5) fail(str("unsupported pickle protocol ", int(v)));
                break;
            }
            case 0x95:  // FRAME: framing is only a buffering hint
                take(8);
                break;
            case '.': {  // STOP
                if (!marks_.empty() || stack_.size() != 1) fail("STOP with a malformed stack");
                if (pos_ != size_) fail("data after the pickle's STOP");
                return stack_.back();
            }
            case '(':
                charge(sizeof(size_t));
                marks_.push_back(stack_.size());
                break;
            case '}':
                push(make(Kind::kDict));
                break;
            case ']':
                push(make(Kind::kList));
                break;
            case ')':
                push(make_tuple({}));
                break;
            case 't':
                push(make_tuple(pop_mark()));
                break;
            case 0x85: {
                Obj* a = pop();
                push(make_tuple({a}));
                break;
            }
            case 0x86: {
                Obj* b = pop();
                Obj* a = pop();
                push(make_tuple({a, b}));
                break;
            }
            case 0x87: {
                Obj* c = pop();
                Obj* b = pop();
                Obj* a = pop();
                push(make_tuple({a, b, c}));
                break;
            }
            case 'X':     // BINUNICODE
            case 0x8c:    // SHORT_BINUNICODE
            case 0x8d: {  // BINUNICODE8
                const uint64_t n = read_le(op == 'X' ? 4 : op == 0x8c ? 1 : 8);
                if (n > size_ - pos_) fail("pickle is truncated (string runs past the end)");
                Obj* s = make(Kind::kStr);
                charge(n);
                s->s.assign(reinterpret_cast<const char*>(take(n)), n);
                push(s);
                break;
            }
            case 'c': {  // GLOBAL
                std::string module = read_line();
                std::string name = read_line();
                push(resolve_global(module, name));
                break;
            }
            case 'Q':  // BINPERSID
                push(persistent_load(pop()));
                break;
            case 'J':
                push(make_int(static_cast<int32_t>(read_le(4))));
                break;
            case 'K':
                push(make_int(static_cast<int64_t>(read_le(1))));
                break;
            case 'M':
                push(make_int(static_cast<int64_t>(read_le(2))));
                break;
            case 0x8a: {  // LONG1: n-byte little-endian two's complement
                const size_t n = *take(1);
                if (n > 8) fail(str("LONG1 integer of ", n, " bytes is too large"));
                uint64_t v = read_le(n);
                if (n > 0 && n < 8 && (v >> (8 * n - 1)) != 0) v |= ~uint64_t{0} << (8 * n);
                push(make_int(static_cast<int64_t>(v)));
                break;
            }
            case 0x88:
            case 0x89: {
                Obj* b = make(Kind::kBool);
                b->i = op == 0x88;
                push(b);
                break;
            }
            case 'N':
                push(make(Kind::kNone));
                break;
            case 'R': {  // REDUCE
                Obj* args = pop();
                Obj* callable = pop();
                push(reduce(callable, args));
                break;
            }
            case 'b': {  // BUILD: only the OrderedDict's attributes (_metadata), ignored
                pop();
                Obj* target = top();
                if (target->kind != Kind::kDict) fail(str("BUILD on a ", kind_name(target->kind)));
                break;
            }
            case 's': {
                Obj* v = pop();
                Obj* k = pop();
                set_items(top(), {k, v});
                break;
            }
            case 'u': {
                std::vector<Obj*> kv = pop_mark();
                set_items(top(), kv);
                break;
            }
            case 'a': {
                Obj* v = pop();
                Obj* list = top();
                if (list->kind != Kind::kList) fail(str("APPEND on a ", kind_name(list->kind)));
                charge(sizeof(Obj*));
                list->items.push_back(v);
                break;
            }
            case 'e': {
                std::vector<Obj*> vs = pop_mark();
                Obj* list = top();
                if (list->kind != Kind::kList) fail(str("APPENDS on a ", kind_name(list->kind)));
                charge(vs.size() * sizeof(Obj*));
                list->items.insert(list->items.end(), vs.begin(), vs.end());
                break;
            }
            case 'h':
                push(memo_get(read_le(1)));
                break;
            case 'j':
                push(memo_get(read_le(4)));
                break;
            case 'q':
                memo_put(read_le(1));
                break;
            case 'r':
                memo_put(read_le(4));
                break;
            case 0x94:  // MEMOIZE
                memo_put(memo_.size());
                break;
            default: {
                const char* name = opcode_name(op);
                char hex[8];
                std::snprintf(hex, sizeof hex, "0x%02x", op);
                fail(name ? str("unexpected pickle opcode ", name, " (", hex,
                                "; not part of the torch.save subset)")
                          : str("unknown pickle opcode ", hex));
            }
        }
    }
}

}  // namespace

std::vector<PickledTensor> unpickle_state_dict(const uint8_t* data, size_t size,
                                               const std::string& origin) {
    Unpickler u(data, size, origin);
    Obj* root = u.run();
    FOT_CHECK(root->kind == Kind::kDict, origin, ": the pickle holds a ", kind_name(root->kind),
              ", not a state dict (name -> tensor)");
    std::vector<PickledTensor> out;
    std::set<std::string> names;
    for (const auto& [k, v] : root->dict) {
        FOT_CHECK(k->kind == Kind::kStr, origin, ": state dict has a ", kind_name(k->kind),
                  " key; expected tensor names");
        FOT_CHECK(v->kind == Kind::kTensor, origin, ": state dict entry ", safe_quote(k->s),
                  " is a ", kind_name(v->kind), ", not a tensor");
        FOT_CHECK(names.insert(k->s).second, origin, ": state dict has ", safe_quote(k->s),
                  " twice");
        out.push_back(u.tensor(v->tensor));
        out.back().name = k->s;
    }
    return out;
}

}  // namespace fot
