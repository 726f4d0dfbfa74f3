// Typed option tables: every option of a configuration struct is declared once, as one row
// that gives its command-line flag, its YAML key, its help line, its value type (how text
// becomes a value, which values are allowed, how a value is printed) and the field it fills.
// The command-line parser (launch/args.h), the run-YAML reader (config/run_config.cpp), the
// --help text and validate_run_config() all iterate the same rows, so
//  - a flag cannot exist without help, or be accepted by one command and ignored by another;
//  - a default is never repeated as a string: --help prints the field of a default-constructed
//    struct, so the help cannot drift from the code;
//  - the CLI and the YAML accept and reject the same values, with the same words.
//
// Problems are phrased to follow a subject that the caller supplies, so one text serves both
// sources:  "fotrt logits: --tp" + " must be >= 1, got 0"
//           "run.yaml:3: memory.k" + " expects a positive integer, got 'abc'".
//
// A table is built once (a function-local static) with rows like
//   t.add(flag("tp", "N", "tensor-parallel degree").in_yaml("parallel.tp"),
//         FOT_FIELD(parallel.tp), integer<int64_t>(1));
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/core/status.h"

// The field of a row: a generic lambda, so that it serves a const struct (checks) and a
// mutable one (parsing) alike.
#define FOT_FIELD(path)              \
    [](auto& fot_target_) -> auto& { \
        return fot_target_.path;     \
    }

namespace fot {

// ---- value types ------------------------------------------------------------------------------

// How text becomes a V. `parse` and `check` return "" when the value is fine, else the problem.
template <typename V>
struct ValueType {
    // What a value looks like, completing "expects ...": "an integer", "cpu or cuda".
    std::string expected;
    // Parses and checks text (a flag value or a YAML scalar).
    std::function<std::string(const std::string& text, V* out)> parse;
    // Checks a value that code (not text) put into a struct: validate_run_config().
    std::function<std::string(const V& value)> check;
    // The value as a user would write it ("128", "dense", "5GB"); used for --help defaults.
    std::function<std::string(const V& value)> show;
};

// Any string.
ValueType<std::string> text_value();

// true / yes / on or false / no / off (the YAML spelling of a command-line switch).
ValueType<bool> boolean_value();

// One of `names`, e.g. {"cpu", "cuda"}.
ValueType<std::string> string_choice(std::vector<std::string> names);

// An enumerated value with its own parser and printer (dtypes, retrieval modes, ...).
// `expected` lists the accepted spellings ("f32 or bf16"); `allowed` limits hand-set values
// when the printer knows more values than this option accepts (all values when empty).
template <typename V>
ValueType<V> choice(std::string expected, std::function<bool(const std::string&, V*)> parse,
                    std::function<std::string(const V&)> show,
                    std::function<bool(const V&)> allowed = {});

// Whole numbers in [min, max]: "expects an integer, got 'x'", "must be >= 1, got 0".
template <typename I>
ValueType<I> integer(I min = std::numeric_limits<I>::lowest(),
                     I max = std::numeric_limits<I>::max());
// Whole numbers in [1, max], described as "a positive integer".
ValueType<int64_t> positive_integer(int64_t max = INT64_MAX);

// Real numbers in a range; an open end excludes its bound: real(0, 1, true) is (0, 1].
ValueType<double> real(double min, double max = std::numeric_limits<double>::infinity(),
                       bool min_open = false, bool max_open = false);

// Token counts: 65536, 64k (x 1024) or 1m (x 1024^2), at least `min`.
ValueType<int64_t> count(int64_t min);

// Byte sizes as parse_byte_size() reads them ("8GiB", "512MB", "1000000"), at least `min`.
ValueType<int64_t> byte_size(int64_t min);

// A comma-separated list of `item`s, at least one; `example` shows one ("2k,8k,32k").
template <typename V>
ValueType<std::vector<V>> list_of(ValueType<V> item, std::string example);

// Parses "8GiB", "512MB", "1.5GB", "1000000" into bytes. Units: B, KB/MB/GB/TB (powers of
// 1000), KiB/MiB/GiB/TiB (powers of 1024), case-insensitive; fractions of a byte round down.
Result<int64_t> parse_byte_size(const std::string& s);
// The shortest exact spelling of a byte count: 5000000000 -> "5GB", 8589934592 -> "8GiB".
std::string format_byte_size(int64_t bytes);

// ---- rows and tables --------------------------------------------------------------------------

// What a table row says about its option, besides its field and value type. Built with
// flag() / switch_flag() and the chained setters, so that a row reads as what it declares:
//   flag("tp", "N", "tensor-parallel degree").in_yaml("parallel.tp")
struct OptionSpec {
    std::string flag;        // command-line name without "--"; "" = YAML only
    std::string key;         // YAML key path ("memory.k"); "" = command line only
    std::string value_name;  // placeholder in --help ("N", "cpu|cuda"); "" = a switch
    std::string help;        // one line; --help appends the default
    // Shown as the default instead of the field's own default when that is decided
    // elsewhere: an unset std::optional ("config.json's mem_dtype"), a path derived from
    // another option, an empty value filled in later.
    std::string default_note;
    // Must be given (on the command line, or in the YAML when the row has a key).
    bool required = false;

    OptionSpec& in_yaml(std::string yaml_key) {
        key = std::move(yaml_key);
        return *this;
    }
    OptionSpec& default_is(std::string note) {
        default_note = std::move(note);
        return *this;
    }
    OptionSpec& must_be_given() {
        required = true;
        return *this;
    }
};

// An option that takes a value: --name VALUE or --name=VALUE.
inline OptionSpec flag(std::string name, std::string value_name, std::string help) {
    OptionSpec s;
    s.flag = std::move(name);
    s.value_name = std::move(value_name);
    s.help = std::move(help);
    return s;
}

// A switch: --name alone turns it on (in YAML: name: true).
inline OptionSpec switch_flag(std::string name, std::string help) {
    return flag(std::move(name), "", std::move(help));
}

template <typename T>
struct Option : OptionSpec {
    std::string default_text;  // for --help: default_note, else the default field printed
    std::string expected;      // the value type's `expected`
    bool nullable = false;     // a std::optional field: YAML null resets it to unset
    std::function<std::string(const std::string& text, T& target)> set;  // "" or the problem
    std::function<std::string(const T& target)> check;                   // "" or the problem
    std::function<void(T& target)> reset;        // to the value of a default-constructed T
    std::function<bool(const T& target)> given;  // differs from a default-constructed T
    bool is_switch() const { return value_name.empty(); }
    // How messages name the option: "--tp" when it has a flag, else its key.
    std::string name() const { return flag.empty() ? key : "--" + flag; }
};

// The rows of one struct T (default-constructible: its defaults are the options' defaults).
template <typename T>
class OptionTable {
  public:
    // Adds a row for the field `field(T&)` (FOT_FIELD) of value type `type`. The field is
    // a V, or a std::optional<V> (then YAML null unsets it and an unset default shows the
    // spec's default_note). A switch (no value_name) must be a bool. A flag or key declared
    // twice is a bug.
    template <typename Field, typename V>
    OptionTable& add(OptionSpec spec, Field field, ValueType<V> type);

    const std::vector<Option<T>>& options() const { return options_; }
    const Option<T>* find_flag(std::string_view flag) const;
    const Option<T>* find_key(std::string_view key) const;
    // The first problem of a hand-built target, named by key (else flag):
    // "parallel.tp must be >= 1, got 0"; "" when every field is fine.
    std::string check(const T& target) const;

  private:
    std::vector<Option<T>> options_;
};

// ---- implementation ---------------------------------------------------------------------------

namespace option_detail {

template <typename>
struct is_optional : std::false_type {};
template <typename V>
struct is_optional<std::optional<V>> : std::true_type {};

// The integer core (int64 range; seeds and counts fit): "" or the problem.
std::string parse_integer(const std::string& text, const std::string& expected, int64_t* out);
std::string range_problem(const std::string& bound, const std::string& got);
// ">= 1", "in [1, 100]", "<= 7"; the int64 extremes mean no bound on that side.
std::string integer_bound(int64_t min, int64_t max);
std::string quote(const std::string& s);
std::vector<std::string> split_commas(const std::string& s);

}  // namespace option_detail

template <typename V>
ValueType<V> choice(std::string expected, std::function<bool(const std::string&, V*)> parse,
                    std::function<std::string(const V&)> show,
                    std::function<bool(const V&)> allowed) {
    ValueType<V> t;
    t.expected = expected;
    t.show = show;
    auto unknown = [expected](const std::string& s) {
        return option_detail::quote(s) + " is unknown (expected " + expected + ")";
    };
    t.parse = [parse, allowed, unknown](const std::string& text, V* out) {
        V v{};
        if (!parse(text, &v) || (allowed && !allowed(v))) return unknown(text);
        *out = v;
        return std::string();
    };
    t.check = [allowed, show, unknown](const V& v) {
        return allowed && !allowed(v) ? unknown(show(v)) : std::string();
    };
    return t;
}

template <typename I>
ValueType<I> integer(I min, I max) {
    static_assert(std::is_integral_v<I> && sizeof(I) <= sizeof(int64_t));
    // Seeds are uint64_t; text beyond int64 is not accepted (nobody types such seeds).
    const int64_t lo = static_cast<int64_t>(min);
    const int64_t hi = static_cast<uint64_t>(max) > static_cast<uint64_t>(INT64_MAX)
                           ? INT64_MAX
                           : static_cast<int64_t>(max);
    const std::string bound = option_detail::integer_bound(lo, hi);
    ValueType<I> t;
    t.expected = "an integer";
    t.show = [](const I& v) { return std::to_string(v); };
    t.check = [min, max, bound](const I& v) {
        return v < min || v > max ? option_detail::range_problem(bound, std::to_string(v))
                                  : std::string();
    };
    t.parse = [lo, hi, bound](const std::string& text, I* out) {
        int64_t v = 0;
        std::string p = option_detail::parse_integer(text, "an integer", &v);
        if (!p.empty()) return p;
        if (v < lo || v > hi) return option_detail::range_problem(bound, std::to_string(v));
        *out = static_cast<I>(v);
        return std::string();
    };
    return t;
}

template <typename V>
ValueType<std::vector<V>> list_of(ValueType<V> item, std::string example) {
    ValueType<std::vector<V>> t;
    t.expected = "a comma-separated list like " + example;
    t.show = [item](const std::vector<V>& v) {
        std::string s;
        for (size_t i = 0; i < v.size(); ++i) {
            if (i > 0) s += ',';
            s += item.show(v[i]);
        }
        return s;
    };
    t.check = [item](const std::vector<V>& v) {
        for (const V& x : v) {
            if (std::string p = item.check(x); !p.empty()) return p;
        }
        return std::string();
    };
    t.parse = [item, expected = t.expected](const std::string& text, std::vector<V>* out) {
        std::vector<V> values;
        for (const std::string& part : option_detail::split_commas(text)) {
            V v{};
            if (std::string p = item.parse(part, &v); !p.empty()) return p;
            values.push_back(std::move(v));
        }
        if (values.empty()) return "expects " + expected + ", got " + option_detail::quote(text);
        *out = std::move(values);
        return std::string();
    };
    return t;
}

template <typename T>
template <typename Field, typename V>
OptionTable<T>& OptionTable<T>::add(OptionSpec spec, Field field, ValueType<V> type) {
    using F = std::remove_cvref_t<decltype(field(std::declval<T&>()))>;
    constexpr bool kWrapped = !std::is_same_v<F, V>;
    static_assert(!kWrapped || std::is_same_v<F, std::optional<V>>,
                  "the field must hold the value type or a std::optional of it");
    FOT_ASSERT(!spec.flag.empty() || !spec.key.empty());
    FOT_ASSERT(spec.flag.empty() || find_flag(spec.flag) == nullptr);
    FOT_ASSERT(spec.key.empty() || find_key(spec.key) == nullptr);
    FOT_ASSERT((!spec.value_name.empty() || std::is_same_v<V, bool>));

    Option<T> o;
    static_cast<OptionSpec&>(o) = std::move(spec);
    o.expected = type.expected;
    o.nullable = kWrapped;
    T defaults{};
    const F& d = field(defaults);
    if (!o.default_note.empty()) {
        o.default_text = o.default_note;
    } else if constexpr (kWrapped) {
        if (d) o.default_text = type.show(*d);
    } else if constexpr (std::is_same_v<V, bool>) {
        // A switch is off unless given; "(default: false)" would say nothing.
        if (!o.is_switch()) o.default_text = type.show(d);
    } else {
        o.default_text = type.show(d);
    }
    if (o.required) o.default_text.clear();

    o.set = [field, type](const std::string& text, T& target) {
        V v{};
        std::string p = type.parse(text, &v);
        if (p.empty()) field(target) = std::move(v);
        return p;
    };
    o.check = [field, type](const T& target) {
        const F& f = field(target);
        if constexpr (kWrapped) {
            return f ? type.check(*f) : std::string();
        } else {
            return type.check(f);
        }
    };
    o.reset = [field](T& target) {
        T fresh{};
        field(target) = std::move(field(fresh));
    };
    o.given = [field](const T& target) {
        T fresh{};
        return !(field(target) == field(fresh));
    };
    options_.push_back(std::move(o));
    return *this;
}

template <typename T>
const Option<T>* OptionTable<T>::find_flag(std::string_view flag) const {
    for (const Option<T>& o : options_) {
        if (!o.flag.empty() && o.flag == flag) return &o;
    }
    return nullptr;
}

template <typename T>
const Option<T>* OptionTable<T>::find_key(std::string_view key) const {
    for (const Option<T>& o : options_) {
        if (!o.key.empty() && o.key == key) return &o;
    }
    return nullptr;
}

template <typename T>
std::string OptionTable<T>::check(const T& target) const {
    for (const Option<T>& o : options_) {
        if (std::string p = o.check(target); !p.empty()) {
            return (o.key.empty() ? "--" + o.flag : o.key) + " " + p;
        }
    }
    return "";
}

}  // namespace fot
