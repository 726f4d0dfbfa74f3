// Unit tests of the checkpoint parsers on hand-built byte buffers: safetensors headers, the
// zip reader (plain and ZIP64), the restricted unpickler and the torch .bin layout.
#include <gtest/gtest.h>

#include <cstring>

#include "runtime/core/status.h"
#include "runtime/io/pickle.h"
#include "runtime/io/pytorch_bin.h"
#include "runtime/io/safetensors.h"
#include "runtime/io/zip_reader.h"
#include "tests/io/io_test_util.h"

namespace fot {
namespace {

using test::Bytes;
using test::PickleWriter;

// Runs `fn`, expects a fot::Error whose message contains every one of `parts`, and returns
// the message.
template <typename Fn>
std::string expect_error(Fn fn, std::initializer_list<const char*> parts) {
    try {
        fn();
    } catch (const Error& e) {
        std::string msg = e.what();
        for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        return msg;
    }
    ADD_FAILURE() << "no fot::Error thrown";
    return "";
}

// ---- safetensors --------------------------------------------------------------------------

Bytes make_safetensors(const std::string& header, const Bytes& data) {
    Bytes b;
    test::put_le(b, header.size(), 8);
    b.insert(b.end(), header.begin(), header.end());
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

Bytes iota_bytes(size_t n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + 1);
    return b;
}

std::vector<TensorRecord> parse_st(const Bytes& b) {
    return parse_safetensors(b.data(), b.size(), "x.safetensors");
}

TEST(Safetensors, ParsesValidFileSortedZeroCopy) {
    const Bytes data = iota_bytes(24 + 8);
    const Bytes file =
        make_safetensors(R"({"__metadata__":{"format":"pt"},)"
                         R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]},)"
                         R"("a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},)"
                         R"("e":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}})",
                         data);
    const auto r = parse_st(file);
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[0].name, "a");
    EXPECT_EQ(r[1].name, "e");
    EXPECT_EQ(r[2].name, "w");
    EXPECT_EQ(r[0].dtype, DType::kBF16);
    EXPECT_EQ(r[2].dtype, DType::kF32);
    EXPECT_EQ(r[2].shape, Shape({2, 3}));
    EXPECT_EQ(r[2].nbytes, 24u);
    EXPECT_EQ(r[1].nbytes, 0u);
    const size_t data_start = file.size() - data.size();
    EXPECT_EQ(r[0].data, file.data() + data_start);
    EXPECT_EQ(r[2].data, file.data() + data_start + 8);
    EXPECT_EQ(r[2].file, "x.safetensors");
}

TEST(Safetensors, AcceptsPaddedHeaderAndHoles) {
    const Bytes file = make_safetensors(
        R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}}   )", iota_bytes(12));
    const auto r = parse_st(file);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].nbytes, 4u);
}

TEST(Safetensors, RejectsTooShortFile) {
    const Bytes b = {1, 2, 3};
    expect_error([&] { parse_st(b); }, {"x.safetensors", "too short"});
}

TEST(Safetensors, RejectsHeaderLengthBeyondFile) {
    Bytes b = make_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                               iota_bytes(4));
    b[0] = 0xff;
    b[1] = 0xff;
    expect_error([&] { parse_st(b); }, {"x.safetensors", "header length", "larger than the file"});
}

TEST(Safetensors, RejectsCorruptJson) {
    const Bytes b =
        make_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4])", iota_bytes(4));
    expect_error([&] { parse_st(b); }, {"x.safetensors", "invalid JSON"});
    const Bytes c = make_safetensors("[1, 2]", {});
    expect_error([&] { parse_st(c); }, {"x.safetensors", "'{'"});
}

// JSON followed by a NUL and junk: nlohmann alone stops at the NUL as if the text ended.
TEST(Safetensors, RejectsNulAndJunkAfterTheHeader) {
    const Bytes b = make_safetensors(
        std::string(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})") + '\0' + "junk",
        iota_bytes(4));
    expect_error([&] { parse_st(b); },
                 {"x.safetensors: header: invalid JSON: NUL byte at offset 54"});
}

// 300k tensors: the header parse must be linear (it once took 3.3 s for 20k entries, 20.7 s
// for 40k). No timing assertion: the test's ctest TIMEOUT is the guard.
TEST(Safetensors, ParsesAHeaderOf300kTensors) {
    constexpr int kTensors = 300000;
    std::string header = "{";
    for (int i = 0; i < kTensors; ++i) {
        header += (i ? ",\"t" : "\"t") + std::to_string(i) + R"(":{"dtype":"U8","shape":[1],)" +
                  R"("data_offsets":[)" + std::to_string(i) + "," + std::to_string(i + 1) + "]}";
    }
    header += "}";
    const Bytes file = make_safetensors(header, Bytes(kTensors, 7));
    const auto r = parse_st(file);
    ASSERT_EQ(r.size(), static_cast<size_t>(kTensors));
    EXPECT_EQ(r.front().name, "t0");
    EXPECT_EQ(r.back().name, "t99999");  // sorted by name
    // The same header with the last name repeated is refused, also in linear time.
    header.replace(header.rfind("\"t299999\""), 9, "\"t299998\"");
    expect_error([&] { parse_st(make_safetensors(header, Bytes(kTensors, 7))); },
                 {"duplicate key 't299998'"});
}

TEST(Safetensors, RejectsDuplicateNames) {
    const Bytes b = make_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                     R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                     iota_bytes(8));
    expect_error([&] { parse_st(b); }, {"x.safetensors", "duplicate key", "'a'"});
}

TEST(Safetensors, RejectsUnknownAndUnsupportedDtypes) {
    const Bytes b =
        make_safetensors(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", iota_bytes(4));
    expect_error([&] { parse_st(b); }, {"x.safetensors", "'a'", "unknown dtype", "Q7"});
    const Bytes c = make_safetensors(R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
                                     iota_bytes(8));
    expect_error([&] { parse_st(c); }, {"x.safetensors", "F64", "not supported"});
}

TEST(Safetensors, RejectsShapeThatDoesNotMatchOffsets) {
    const Bytes b = make_safetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                     iota_bytes(8));
    expect_error([&] { parse_st(b); }, {"x.safetensors", "'a'", "[3]", "12 bytes", "span 8"});
}

TEST(Safetensors, RejectsBadShapesAndOffsets) {
    const Bytes neg = make_safetensors(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                                       iota_bytes(4));
    expect_error([&] { parse_st(neg); }, {"'a'", "shape"});
    const Bytes huge = make_safetensors(
        R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
        iota_bytes(4));
    expect_error([&] { parse_st(huge); }, {"'a'", "too large"});
    const Bytes backwards = make_safetensors(
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", iota_bytes(4));
    expect_error([&] { parse_st(backwards); }, {"'a'", "data_offsets"});
    const Bytes missing = make_safetensors(R"({"a":{"dtype":"F32","shape":[1]}})", {});
    expect_error([&] { parse_st(missing); }, {"'a'", "data_offsets"});
}

TEST(Safetensors, RejectsOffsetsOutOfRange) {
    const Bytes b = make_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                     iota_bytes(8));
    expect_error([&] { parse_st(b); }, {"x.safetensors", "'a'", "out of range"});
}

TEST(Safetensors, RejectsOverlappingTensors) {
    const Bytes b = make_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                     iota_bytes(12));
    expect_error([&] { parse_st(b); }, {"x.safetensors", "'a'", "'b'", "overlap"});
}

TEST(Safetensors, QuotesControlCharactersInNames) {
    const Bytes b = make_safetensors(R"({"a\nb":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})",
                                     iota_bytes(4));
    const std::string msg = expect_error([&] { parse_st(b); }, {"'a\\x0ab'"});
}

TEST(Safetensors, SurvivesDeeplyNestedHeader) {
    std::string h;
    for (int i = 0; i < 100000; ++i) h += R"({"a":)";
    h += "1";
    h += std::string(100000, '}');
    const Bytes b = make_safetensors(h, {});
    expect_error([&] { parse_st(b); }, {"x.safetensors", "'a'", "dtype"});
}

// ---- zip ----------------------------------------------------------------------------------

TEST(ZipReader, ReadsStoredEntries) {
    for (bool zip64 : {false, true}) {
        const Bytes a = iota_bytes(100), b = {'h', 'i'};
        const Bytes z = test::build_zip({{"top/a", a}, {"top/b", b}}, zip64);
        ZipReader zip(z.data(), z.size(), "t.bin");
        ASSERT_EQ(zip.entries().size(), 2u) << zip64;
        const ZipEntry* ea = zip.find("top/a");
        ASSERT_NE(ea, nullptr);
        EXPECT_EQ(ea->size, 100u);
        EXPECT_EQ(std::memcmp(zip.entry_data(*ea), a.data(), a.size()), 0);
        const ZipEntry* eb = zip.find("top/b");
        ASSERT_NE(eb, nullptr);
        EXPECT_EQ(std::memcmp(zip.entry_data(*eb), b.data(), 2), 0);
        EXPECT_EQ(zip.find("top/c"), nullptr);
    }
}

TEST(ZipReader, AcceptsArchiveComment) {
    Bytes z = test::build_zip({{"x", {1, 2, 3}}});
    const std::string comment = "PK\x05\x06 looks like a signature";
    z[z.size() - 2] = static_cast<uint8_t>(comment.size());
    z.insert(z.end(), comment.begin(), comment.end());
    ZipReader zip(z.data(), z.size(), "t.bin");
    ASSERT_EQ(zip.entries().size(), 1u);
    EXPECT_EQ(zip.entry_data(zip.entries()[0])[2], 3);
}

TEST(ZipReader, RejectsNonZipAndTruncated) {
    const Bytes text(200, 'x');
    expect_error([&] { ZipReader(text.data(), text.size(), "t.bin"); },
                 {"t.bin", "not a zip archive"});
    const Bytes tiny = {'P', 'K'};
    expect_error([&] { ZipReader(tiny.data(), tiny.size(), "t.bin"); }, {"t.bin", "too short"});
    Bytes z = test::build_zip({{"top/a", iota_bytes(50)}});
    z.pop_back();
    expect_error([&] { ZipReader(z.data(), z.size(), "t.bin"); }, {"t.bin", "truncated"});
}

TEST(ZipReader, RejectsCentralDirectoryOutOfRange) {
    Bytes z = test::build_zip({{"top/a", iota_bytes(50)}});
    z[z.size() - 6] = 0xf0;  // high byte area of the central directory offset
    z[z.size() - 5] = 0x7f;
    expect_error([&] { ZipReader(z.data(), z.size(), "t.bin"); }, {"t.bin", "central directory"});
}

TEST(ZipReader, RejectsLocalHeaderAndDataOutOfRange) {
    const Bytes base = test::build_zip({{"top/a", iota_bytes(50)}});
    const size_t cd = test::find_bytes(base, "PK\x01\x02");
    ASSERT_NE(cd, std::string::npos);
    Bytes bad_offset = base;
    bad_offset[cd + 42 + 2] = 0x7f;  // local header offset -> far beyond the file
    ZipReader z1(bad_offset.data(), bad_offset.size(), "t.bin");
    expect_error([&] { z1.entry_data(z1.entries()[0]); }, {"t.bin", "'top/a'", "local header"});
    Bytes bad_size = base;
    bad_size[cd + 20 + 2] = 0x7f;  // compressed and uncompressed size -> huge
    bad_size[cd + 24 + 2] = 0x7f;
    ZipReader z2(bad_size.data(), bad_size.size(), "t.bin");
    expect_error([&] { z2.entry_data(z2.entries()[0]); }, {"t.bin", "'top/a'", "past the end"});
}

TEST(ZipReader, RejectsCompressedEntries) {
    const Bytes z = test::build_zip({{"top/a", iota_bytes(10), 8}});
    ZipReader zip(z.data(), z.size(), "t.bin");
    expect_error([&] { zip.entry_data(zip.entries()[0]); }, {"t.bin", "'top/a'", "compressed"});
}

// ---- pickle -------------------------------------------------------------------------------

std::vector<PickledTensor> unpickle(const Bytes& b) {
    return unpickle_state_dict(b.data(), b.size(), "t.bin: top/data.pkl");
}

// {"w": f32 [2,3] at offset 1 of storage "0", "n": bf16 [4] of storage "1"} as an
// OrderedDict with a _metadata attribute, using the memo like torch.save does.
Bytes good_pickle() {
    PickleWriter p;
    p.proto().global("collections", "OrderedDict").put(0).empty_tuple().reduce().put(1);
    p.mark();
    p.str("w").tensor("FloatStorage", "0", 7, 1, {2, 3}, {3, 1});
    p.str("n").tensor("BFloat16Storage", "1", 4, 0, {4}, {1});
    p.op('u');
    // BUILD with the _metadata state: {"_metadata": OrderedDict()}
    p.op('}').str("_metadata").get(0).empty_tuple().reduce().op('s').op('b');
    p.stop();
    return p.bytes();
}

TEST(Pickle, ParsesTorchStyleStateDict) {
    const auto t = unpickle(good_pickle());
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0].name, "w");
    EXPECT_EQ(t[0].dtype, DType::kF32);
    EXPECT_EQ(t[0].storage_key, "0");
    EXPECT_EQ(t[0].storage_numel, 7u);
    EXPECT_EQ(t[0].storage_offset, 1);
    EXPECT_EQ(t[0].shape, Shape({2, 3}));
    EXPECT_EQ(t[0].stride, std::vector<int64_t>({3, 1}));
    EXPECT_EQ(t[1].name, "n");
    EXPECT_EQ(t[1].dtype, DType::kBF16);
    EXPECT_EQ(t[1].storage_key, "1");
}

TEST(Pickle, ParsesLargeIntegersAndPlainDict) {
    PickleWriter p;
    p.proto().op('}').mark();
    p.str("big").tensor("HalfStorage", "k", int64_t{5} << 32, 0, {int64_t{5} << 32}, {1});
    p.op('u').stop();
    const auto t = unpickle(p.bytes());
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].storage_numel, uint64_t{5} << 32);
    EXPECT_EQ(t[0].shape[0], int64_t{5} << 32);
    EXPECT_EQ(t[0].dtype, DType::kF16);
}

TEST(Pickle, RejectsUnexpectedOpcode) {
    Bytes b = good_pickle();
    b.insert(b.begin() + 2, '0');  // POP right after PROTO
    expect_error([&] { unpickle(b); }, {"t.bin: top/data.pkl", "opcode POP", "byte 2"});
    Bytes c = good_pickle();
    c[2] = 0xff;
    expect_error([&] { unpickle(c); }, {"t.bin: top/data.pkl", "unknown pickle opcode 0xff"});
}

TEST(Pickle, RejectsDisallowedGlobals) {
    PickleWriter p;
    p.proto().global("os", "system").str("echo hi").op(0x85).reduce().stop();
    expect_error([&] { unpickle(p.bytes()); },
                 {"t.bin: top/data.pkl", "'os.system'", "not allowed"});
    PickleWriter q;
    q.proto().op('}').mark().str("w").tensor("DoubleStorage", "0", 1, 0, {1}, {1}).op('u').stop();
    expect_error([&] { unpickle(q.bytes()); }, {"torch.DoubleStorage", "not supported"});
}

TEST(Pickle, RejectsTruncatedAndBadMemo) {
    Bytes b = good_pickle();
    b.pop_back();  // STOP
    expect_error([&] { unpickle(b); }, {"t.bin: top/data.pkl", "truncated"});
    Bytes c = good_pickle();
    c.resize(c.size() / 2);
    expect_error([&] { unpickle(c); }, {"t.bin: top/data.pkl"});
    PickleWriter p;
    p.proto().get(9).stop();
    expect_error([&] { unpickle(p.bytes()); }, {"memo key 9"});
}

TEST(Pickle, RejectsWrongStructure) {
    PickleWriter list;
    list.proto().op(']').stop();
    expect_error([&] { unpickle(list.bytes()); }, {"list", "not a state dict"});
    PickleWriter not_tensor;
    not_tensor.proto().op('}').str("a").integer(3).op('s').stop();
    expect_error([&] { unpickle(not_tensor.bytes()); }, {"'a'", "int", "not a tensor"});
    PickleWriter underflow;
    underflow.proto().reduce().stop();
    expect_error([&] { unpickle(underflow.bytes()); }, {"underflow"});
    PickleWriter reduce_str;
    reduce_str.proto().str("x").empty_tuple().reduce().stop();
    expect_error([&] { unpickle(reduce_str.bytes()); }, {"REDUCE"});
    PickleWriter dup;
    dup.proto().op('}').mark();
    dup.str("w").tensor("FloatStorage", "0", 1, 0, {1}, {1});
    dup.str("w").tensor("FloatStorage", "0", 1, 0, {1}, {1});
    dup.op('u').stop();
    expect_error([&] { unpickle(dup.bytes()); }, {"'w'", "twice"});
}

// Each tensor copies its storage's key: 20000 tensors of one storage with a 1 MB key would
// keep 20 GB from a 2 MB pickle. The memory budget refuses it after a few dozen.
TEST(Pickle, RefusesMemoryAmplification) {
    PickleWriter p;
    p.proto().op('}').mark();
    p.str("t0").global("torch._utils", "_rebuild_tensor_v2").mark();
    p.mark().str("storage").global("torch", "FloatStorage").str(std::string(1 << 20, 'k'));
    p.str("cpu").integer(0).tuple().op('Q').put(1);
    p.integer(0).empty_tuple().empty_tuple().op(0x89);
    p.global("collections", "OrderedDict").put(2).empty_tuple().reduce().tuple().reduce();
    for (int i = 1; i < 20000; ++i) {
        p.str("t" + std::to_string(i)).global("torch._utils", "_rebuild_tensor_v2").mark();
        p.get(1).integer(0).empty_tuple().empty_tuple().op(0x89);
        p.get(2).empty_tuple().reduce().tuple().reduce();
    }
    p.op('u').stop();
    expect_error([&] { unpickle(p.bytes()); },
                 {"t.bin: top/data.pkl: pickle needs more than ", " bytes of memory to read"});
}

TEST(Pickle, SurvivesSelfReferenceAndDeepNesting) {
    // A list that contains itself: must neither loop nor leak (checked under ASan).
    PickleWriter self;
    self.proto().op(']').put(0).get(0).op('a').stop();
    expect_error([&] { unpickle(self.bytes()); }, {"not a state dict"});
    // 200k nested 1-tuples: no recursion anywhere, so no stack overflow.
    PickleWriter deep;
    deep.proto().empty_tuple();
    for (int i = 0; i < 200000; ++i) deep.op(0x85);
    deep.stop();
    expect_error([&] { unpickle(deep.bytes()); }, {"tuple", "not a state dict"});
}

// ---- torch .bin ---------------------------------------------------------------------------

Bytes f32_bytes(std::initializer_list<float> v) {
    Bytes b(v.size() * 4);
    std::memcpy(b.data(), std::data(v), b.size());
    return b;
}

TEST(PytorchBin, ReadsTensorsFromStorages) {
    const Bytes s0 = f32_bytes({0, 1, 2, 3, 4, 5, 6});
    const Bytes s1 = iota_bytes(8);
    const Bytes z = test::build_zip({{"ckpt/data.pkl", good_pickle()},
                                     {"ckpt/data/0", s0},
                                     {"ckpt/data/1", s1},
                                     {"ckpt/version", {'3', '\n'}}});
    const auto r = parse_pytorch_bin(z.data(), z.size(), "m.bin");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].name, "n");
    EXPECT_EQ(r[1].name, "w");
    EXPECT_EQ(r[1].shape, Shape({2, 3}));
    EXPECT_EQ(r[1].nbytes, 24u);
    float w[6];
    std::memcpy(w, r[1].data, sizeof w);
    EXPECT_EQ(w[0], 1.0f);  // storage offset 1
    EXPECT_EQ(w[5], 6.0f);
    EXPECT_EQ(std::memcmp(r[0].data, s1.data(), 8), 0);
    EXPECT_EQ(r[0].file, "m.bin");
}

Bytes one_tensor_bin(const std::string& storage, int64_t numel, int64_t offset,
                     std::vector<int64_t> size, std::vector<int64_t> stride, size_t entry_bytes) {
    PickleWriter p;
    p.proto().op('}').mark().str("t").tensor(storage, "0", numel, offset, size, stride);
    p.op('u').stop();
    return test::build_zip({{"a/data.pkl", p.bytes()}, {"a/data/0", iota_bytes(entry_bytes)}});
}

TEST(PytorchBin, AcceptsSize1DimsWithAnyStrideAndSharedStorage) {
    const Bytes z = one_tensor_bin("FloatStorage", 6, 0, {1, 6}, {99, 1}, 24);
    EXPECT_EQ(parse_pytorch_bin(z.data(), z.size(), "m.bin").size(), 1u);
    PickleWriter p;
    p.proto().op('}').mark();
    p.str("a").tensor("FloatStorage", "0", 4, 0, {2}, {1});
    p.str("b").tensor("FloatStorage", "0", 4, 2, {2}, {1});
    p.op('u').stop();
    const Bytes z2 = test::build_zip({{"a/data.pkl", p.bytes()}, {"a/data/0", iota_bytes(16)}});
    const auto r = parse_pytorch_bin(z2.data(), z2.size(), "m.bin");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(static_cast<const uint8_t*>(r[1].data) - static_cast<const uint8_t*>(r[0].data), 8);
}

TEST(PytorchBin, RejectsNonContiguousStrides) {
    const Bytes z = one_tensor_bin("FloatStorage", 6, 0, {2, 3}, {1, 2}, 24);
    expect_error([&] { parse_pytorch_bin(z.data(), z.size(), "m.bin"); },
                 {"m.bin", "'t'", "not contiguous"});
}

TEST(PytorchBin, RejectsStorageRangeErrors) {
    const Bytes wrong_size = one_tensor_bin("FloatStorage", 6, 0, {6}, {1}, 20);
    expect_error([&] { parse_pytorch_bin(wrong_size.data(), wrong_size.size(), "m.bin"); },
                 {"m.bin", "'t'", "holds 20 bytes"});
    const Bytes outside = one_tensor_bin("FloatStorage", 6, 4, {3}, {1}, 24);
    expect_error([&] { parse_pytorch_bin(outside.data(), outside.size(), "m.bin"); },
                 {"m.bin", "'t'", "outside its storage"});
}

TEST(PytorchBin, RejectsMissingPiecesAndLegacyFormat) {
    PickleWriter p;
    p.proto().op('}').mark().str("t").tensor("FloatStorage", "7", 1, 0, {1}, {1});
    p.op('u').stop();
    const Bytes no_storage = test::build_zip({{"a/data.pkl", p.bytes()}});
    expect_error([&] { parse_pytorch_bin(no_storage.data(), no_storage.size(), "m.bin"); },
                 {"m.bin", "'a/data/7'", "missing"});
    const Bytes no_pickle = test::build_zip({{"a/data/0", iota_bytes(4)}});
    expect_error([&] { parse_pytorch_bin(no_pickle.data(), no_pickle.size(), "m.bin"); },
                 {"m.bin", "data.pkl"});
    Bytes legacy = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8};
    expect_error([&] { parse_pytorch_bin(legacy.data(), legacy.size(), "m.bin"); },
                 {"m.bin", "legacy"});
}

// ---- robustness: damaged real files never crash and never yield out-of-range records -----

// Every record lies inside the buffer it was parsed from.
void expect_records_in_bounds(const std::vector<TensorRecord>& r, const Bytes& b) {
    for (const TensorRecord& t : r) {
        const auto* p = static_cast<const uint8_t*>(t.data);
        ASSERT_TRUE(p >= b.data() && p + t.nbytes <= b.data() + b.size()) << t.name;
        ASSERT_EQ(t.nbytes, static_cast<size_t>(shape_numel(t.shape)) * dtype_size(t.dtype));
    }
}

// Parses `mutations` damaged variants of `original` (bytes changed in [lo, hi) or the file
// cut short); each parse must either succeed with in-bounds records or throw fot::Error.
// Returns how many were rejected, so the test can check that damage is being noticed.
template <typename Parse>
int fuzz(const Bytes& original, size_t lo, size_t hi, int mutations, Parse parse) {
    uint64_t state = 0x9e3779b97f4a7c15ull;
    auto next = [&] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    int rejected = 0;
    for (int m = 0; m < mutations; ++m) {
        Bytes b = original;
        if (m % 8 == 7) {
            b.resize(next() % b.size());
        } else {
            const int flips = 1 + static_cast<int>(next() % 3);
            for (int f = 0; f < flips; ++f) {
                const size_t pos = lo + next() % (hi - lo);
                // Mostly small changes to digits and lengths, sometimes arbitrary bytes.
                b[pos] = next() % 2 ? static_cast<uint8_t>(b[pos] + 1 + next() % 3)
                                    : static_cast<uint8_t>(next());
            }
        }
        try {
            expect_records_in_bounds(parse(b), b);
        } catch (const Error& e) {
            ++rejected;
            EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
        }
    }
    return rejected;
}

TEST(Robustness, DamagedSafetensorsHeaders) {
    const Bytes file = test::read_bytes(test::fixture_dir("safetensors_bf16_sharded") +
                                        "/model-00001-of-00002.safetensors");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | file[static_cast<size_t>(i)];
    ASSERT_LT(n, file.size());
    const int rejected = fuzz(file, 0, 8 + n, 400, [](const Bytes& b) {
        return parse_safetensors(b.data(), b.size(), "fuzz.safetensors");
    });
    EXPECT_GT(rejected, 200);
}

TEST(Robustness, DamagedTorchBinPickleAndDirectory) {
    const Bytes file = test::read_bytes(test::fixture_dir("pytorch_bf16_sharded") +
                                        "/pytorch_model-00002-of-00002.bin");
    auto parse = [](const Bytes& b) { return parse_pytorch_bin(b.data(), b.size(), "fuzz.bin"); };
    // The pickle sits right after the first local header; the directory at the end.
    const size_t pkl = test::find_bytes(file, "data.pkl");
    ASSERT_NE(pkl, std::string::npos);
    const int r1 = fuzz(file, pkl, pkl + 2000, 400, parse);
    const int r2 = fuzz(file, file.size() - 2500, file.size(), 400, parse);
    EXPECT_GT(r1, 200);
    EXPECT_GT(r2, 200);
}

}  // namespace
}  // namespace fot
