// The typed option tables (config/options.h): value types (what they accept, the words of
// their refusals, how they print), rows (defaults from the struct, optional fields, required
// rows) and tables (lookup, checks of hand-built structs).
#include "config/options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace fot {
namespace {

using ::testing::HasSubstr;

// The parse result of one text: the value, or the problem.
template <typename V>
std::pair<V, std::string> parse(const ValueType<V>& t, const std::string& text) {
    V v{};
    std::string p = t.parse(text, &v);
    return {v, p};
}

TEST(OptionValues, IntegersAndTheirBounds) {
    const ValueType<int64_t> tp = integer<int64_t>(1);
    EXPECT_EQ(parse(tp, "4"), std::make_pair(int64_t{4}, std::string()));
    EXPECT_EQ(parse(tp, "0").second, "must be >= 1, got 0");
    EXPECT_EQ(parse(tp, "x").second, "expects an integer, got 'x'");
    for (const char* bad : {"", " 4", "4 ", "+4", "1.5", "0x10", "99999999999999999999"}) {
        EXPECT_THAT(parse(tp, bad).second, HasSubstr("expects an integer")) << bad;
    }
    EXPECT_EQ(parse(integer<int64_t>(1, 100), "101").second, "must be in [1, 100], got 101");
    EXPECT_EQ(parse(integer<int64_t>(), "-5").first, -5);
    // Unsigned fields (seeds) refuse negatives with the bound, not as "not an integer".
    EXPECT_EQ(parse(integer<uint64_t>(), "-1").second, "must be >= 0, got -1");
    EXPECT_EQ(parse(integer<uint64_t>(), "7").first, 7u);
    EXPECT_EQ(tp.check(0), "must be >= 1, got 0");
    EXPECT_EQ(tp.check(3), "");
    EXPECT_EQ(tp.show(128), "128");

    const ValueType<int64_t> k = positive_integer();
    EXPECT_EQ(parse(k, "abc").second, "expects a positive integer, got 'abc'");
    EXPECT_EQ(parse(k, "0").second, "must be a positive integer, got 0");
    EXPECT_EQ(k.check(-1), "must be a positive integer, got -1");
}

TEST(OptionValues, RealsAndOpenBounds) {
    const ValueType<double> top_p = real(0, 1, /*min_open=*/true);
    EXPECT_DOUBLE_EQ(parse(top_p, "0.9").first, 0.9);
    EXPECT_EQ(parse(top_p, "1").second, "");
    EXPECT_EQ(parse(top_p, "0").second, "must be in (0, 1], got 0");
    EXPECT_EQ(parse(top_p, "1.5").second, "must be in (0, 1], got 1.5");
    for (const char* bad : {"", "x", "0.5x", "nan", "inf", " 1"}) {
        EXPECT_EQ(parse(top_p, bad).second, std::string("expects a number, got '") + bad + "'");
    }
    EXPECT_EQ(parse(real(0), "-0.1").second, "must be >= 0, got -0.1");
    EXPECT_EQ(real(0).show(30.0), "30");
    EXPECT_EQ(real(0).show(0.7), "0.7");
}

TEST(OptionValues, CountsAndByteSizes) {
    const ValueType<int64_t> tokens = count(0);
    EXPECT_EQ(parse(tokens, "65536").first, 65536);
    EXPECT_EQ(parse(tokens, "64k").first, 65536);
    EXPECT_EQ(parse(tokens, "2M").first, 2 << 20);
    EXPECT_EQ(parse(tokens, "0").first, 0);
    for (const char* bad : {"lots", "-5", "k", "1.5k", "99999999999999999m"}) {
        EXPECT_THAT(parse(tokens, bad).second, HasSubstr("expects a count like 65536, 64k or 1m"))
            << bad;
    }
    EXPECT_EQ(parse(count(1), "0").second, "must be >= 1, got 0");
    EXPECT_EQ(tokens.show(65536), "64k");
    EXPECT_EQ(tokens.show(3 << 20), "3m");
    EXPECT_EQ(tokens.show(1000), "1000");

    const ValueType<int64_t> bytes = byte_size(0);
    EXPECT_EQ(parse(bytes, "8GiB").first, int64_t{8} << 30);
    EXPECT_THAT(parse(bytes, "8XB").second, HasSubstr("is an invalid byte size '8XB'"));
    EXPECT_EQ(parse(byte_size(1), "0").second, "must be >= 1, got '0'");
    // Printed sizes parse back to the same count.
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{1024}, int64_t{1536},
                      int64_t{5000000000}, int64_t{8} << 30, int64_t{1500000000}}) {
        const std::string text = format_byte_size(n);
        EXPECT_EQ(parse_byte_size(text).value(), n) << text;
    }
    EXPECT_EQ(format_byte_size(5000000000), "5GB");
    EXPECT_EQ(format_byte_size(int64_t{8} << 30), "8GiB");
    EXPECT_EQ(format_byte_size(1536), "1536");
}

enum class Color { kRed, kBlue, kGreen };

ValueType<Color> color_value() {
    return choice<Color>(
        "red or blue",
        [](const std::string& s, Color* out) {
            if (s == "red")
                *out = Color::kRed;
            else if (s == "blue")
                *out = Color::kBlue;
            else if (s == "green")
                *out = Color::kGreen;
            else
                return false;
            return true;
        },
        [](const Color& c) {
            return std::string(c == Color::kRed ? "red" : c == Color::kBlue ? "blue" : "green");
        },
        [](const Color& c) { return c != Color::kGreen; });
}

TEST(OptionValues, ChoicesListsAndBooleans) {
    EXPECT_EQ(parse(color_value(), "blue").first, Color::kBlue);
    // Known to the parser but not allowed for this option: refused like any unknown word.
    EXPECT_EQ(parse(color_value(), "green").second, "'green' is unknown (expected red or blue)");
    EXPECT_EQ(color_value().check(Color::kGreen), "'green' is unknown (expected red or blue)");

    const ValueType<std::string> backend = string_choice({"cpu", "cuda", "tpu"});
    EXPECT_EQ(backend.expected, "cpu, cuda or tpu");
    EXPECT_EQ(parse(backend, "gpu").second, "'gpu' is unknown (expected cpu, cuda or tpu)");
    EXPECT_EQ(backend.check(""), "'' is unknown (expected cpu, cuda or tpu)");

    const ValueType<std::vector<int64_t>> lengths = list_of(count(1), "2k,8k");
    EXPECT_EQ(parse(lengths, "2k,8k,100").first, (std::vector<int64_t>{2048, 8192, 100}));
    EXPECT_THAT(parse(lengths, "").second, HasSubstr("expects a comma-separated list like 2k,8k"));
    EXPECT_THAT(parse(lengths, "2k,").second, HasSubstr("expects a count"));
    EXPECT_THAT(parse(lengths, "2k,x").second, HasSubstr("got 'x'"));
    EXPECT_EQ(lengths.show({2048, 8192}), "2k,8k");
    EXPECT_EQ(parse(list_of(real(0, 1), "0,1"), "0,1.5").second, "must be in [0, 1], got 1.5");

    for (const char* yes : {"true", "yes", "on"}) EXPECT_TRUE(parse(boolean_value(), yes).first);
    for (const char* no : {"false", "no", "off"}) {
        EXPECT_EQ(parse(boolean_value(), no), std::make_pair(false, std::string()));
    }
    EXPECT_EQ(parse(boolean_value(), "maybe").second,
              "'maybe' is unknown (expected true or false)");
}

struct Inner {
    int64_t k = 128;
};

struct Sample {
    std::string name;
    Inner inner;
    std::optional<Color> color;
    bool verbose = false;
    std::vector<int64_t> sizes;
};

const OptionTable<Sample>& sample_table() {
    static const OptionTable<Sample> table = [] {
        OptionTable<Sample> t;
        t.add(flag("name", "NAME", "a name").must_be_given(), FOT_FIELD(name), text_value());
        t.add(flag("k", "N", "keys").in_yaml("inner.k"), FOT_FIELD(inner.k), positive_integer());
        t.add(flag("color", "red|blue", "a color").in_yaml("color").default_is("the model's"),
              FOT_FIELD(color), color_value());
        t.add(switch_flag("verbose", "say more"), FOT_FIELD(verbose), boolean_value());
        t.add(flag("sizes", "LIST", "sizes"), FOT_FIELD(sizes), list_of(count(1), "1k,2k"));
        return t;
    }();
    return table;
}

TEST(OptionTable, RowsTakeTheirDefaultsFromTheStruct) {
    const OptionTable<Sample>& t = sample_table();
    ASSERT_EQ(t.options().size(), 5u);
    EXPECT_EQ(t.find_flag("k")->default_text, "128");              // Inner::k
    EXPECT_EQ(t.find_flag("color")->default_text, "the model's");  // an unset optional: the note
    EXPECT_EQ(t.find_flag("name")->default_text, "");              // required: no default
    EXPECT_EQ(t.find_flag("verbose")->default_text, "");           // a switch is off
    EXPECT_EQ(t.find_flag("sizes")->default_text, "");             // an empty list
    EXPECT_TRUE(t.find_flag("verbose")->is_switch());
    EXPECT_FALSE(t.find_flag("k")->is_switch());
    EXPECT_EQ(t.find_flag("k")->expected, "a positive integer");
    EXPECT_EQ(t.find_key("inner.k"), t.find_flag("k"));
    EXPECT_EQ(t.find_key("k"), nullptr);
    EXPECT_EQ(t.find_flag("inner.k"), nullptr);
    EXPECT_EQ(t.find_flag("k")->name(), "--k");
}

TEST(OptionTable, SetResetGivenAndCheck) {
    const OptionTable<Sample>& t = sample_table();
    Sample s;
    EXPECT_EQ(t.find_flag("k")->set("7", s), "");
    EXPECT_EQ(s.inner.k, 7);
    EXPECT_EQ(t.find_flag("k")->set("0", s), "must be a positive integer, got 0");
    EXPECT_EQ(s.inner.k, 7);  // a refused value leaves the field alone
    EXPECT_TRUE(t.find_flag("k")->given(s));
    t.find_flag("k")->reset(s);
    EXPECT_EQ(s.inner.k, 128);
    EXPECT_FALSE(t.find_flag("k")->given(s));

    const Option<Sample>& color = *t.find_flag("color");
    EXPECT_TRUE(color.nullable);
    EXPECT_FALSE(t.find_flag("k")->nullable);
    EXPECT_EQ(color.set("blue", s), "");
    EXPECT_EQ(s.color, Color::kBlue);
    color.reset(s);
    EXPECT_FALSE(s.color.has_value());

    EXPECT_FALSE(t.find_flag("name")->given(s));
    EXPECT_EQ(t.find_flag("name")->set("x", s), "");
    EXPECT_TRUE(t.find_flag("name")->given(s));
    EXPECT_EQ(t.find_flag("verbose")->set("true", s), "");
    EXPECT_TRUE(s.verbose);

    // Hand-built values: named by key when the row has one, else by flag.
    EXPECT_EQ(t.check(s), "");
    s.inner.k = 0;
    EXPECT_EQ(t.check(s), "inner.k must be a positive integer, got 0");
    s.inner.k = 1;
    s.color = Color::kGreen;
    EXPECT_EQ(t.check(s), "color 'green' is unknown (expected red or blue)");
    s.color.reset();
    s.sizes = {4, 0};
    EXPECT_EQ(t.check(s), "--sizes must be >= 1, got 0");
}

}  // namespace
}  // namespace fot
