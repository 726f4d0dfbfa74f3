// Helpers for tests against the golden fixtures in tests/data/golden (see its README.md).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace fot::testing {

inline std::string golden_dir(const std::string& name) {
    return std::string(FOT_TEST_DATA) + "/golden/" + name;
}

inline std::vector<float> read_f32(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in) << "cannot open " << path;
    in.seekg(0, std::ios::end);
    const auto bytes = static_cast<size_t>(in.tellg());
    in.seekg(0);
    std::vector<float> v(bytes / 4);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    return v;
}

inline nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    EXPECT_TRUE(in) << "cannot open " << path;
    return nlohmann::json::parse(in);
}

inline std::vector<int32_t> read_ids(const std::string& path) {
    return read_json(path).get<std::vector<int32_t>>();
}

// Largest |a - b|; fails when sizes differ.
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double m = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        m = std::max(m, static_cast<double>(std::abs(a[i] - b[i])));
    }
    return m;
}

inline std::vector<int32_t> argmax_rows(const std::vector<float>& x, int64_t V) {
    std::vector<int32_t> out;
    for (size_t r = 0; r * V < x.size(); ++r) {
        int64_t best = 0;
        for (int64_t i = 1; i < V; ++i) {
            if (x[r * V + i] > x[r * V + best]) best = i;
        }
        out.push_back(static_cast<int32_t>(best));
    }
    return out;
}

}  // namespace fot::testing
