// Helpers of the backend tests (any backend, CPU-only builds included): random data, moving
// data between a backend and the host, and tolerance checks.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "runtime/backend/backend.h"
#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"

namespace fot::testing {

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
}

// A buffer of `dtype` on backend `b` holding `values` (converted from f32 with the library's
// conversions, so every backend sees the same stored bits).
inline Buffer make_buffer(Backend& b, DType dtype, Shape shape, const std::vector<float>& values) {
    Buffer buf = b.alloc(dtype, std::move(shape));
    EXPECT_EQ(static_cast<size_t>(buf.numel()), values.size());
    std::vector<unsigned char> bytes(values.size() * dtype_size(dtype));
    convert_from_f32(values.data(), bytes.data(), dtype, values.size());
    b.upload(buf.view(), bytes.data(), bytes.size());
    return buf;
}

inline Buffer make_i64_buffer(Backend& b, Shape shape, const std::vector<int64_t>& values) {
    Buffer buf = b.alloc(DType::kI64, std::move(shape));
    EXPECT_EQ(static_cast<size_t>(buf.numel()), values.size());
    b.upload(buf.view(), values.data(), values.size() * sizeof(int64_t));
    return buf;
}

// The contents of a f32/bf16/f16 view as f32.
inline std::vector<float> fetch_f32(Backend& b, const TensorView& v) {
    std::vector<unsigned char> bytes(v.nbytes());
    b.download(bytes.data(), v, bytes.size());
    std::vector<float> out(static_cast<size_t>(v.numel()));
    convert_to_f32(bytes.data(), v.dtype, out.data(), out.size());
    return out;
}

inline std::vector<int64_t> fetch_i64(Backend& b, const TensorView& v) {
    std::vector<int64_t> out(static_cast<size_t>(v.numel()));
    b.download(out.data(), v, out.size() * sizeof(int64_t));
    return out;
}

inline std::vector<unsigned char> fetch_bytes(Backend& b, const TensorView& v) {
    std::vector<unsigned char> out(v.nbytes());
    b.download(out.data(), v, out.size());
    return out;
}

// A tolerance: |got - want| <= abs + rel * |want| elementwise; infinities must match exactly
// and NaN never passes.
struct Tol {
    double abs;
    double rel;
};

inline ::testing::AssertionResult all_close(const std::vector<float>& got,
                                            const std::vector<float>& want, Tol tol) {
    if (got.size() != want.size()) {
        return ::testing::AssertionFailure()
               << "size " << got.size() << " != expected " << want.size();
    }
    size_t bad = 0, first = 0;
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double g = got[i], w = want[i];
        bool ok;
        if (std::isnan(g) || std::isnan(w)) {
            ok = false;
        } else if (std::isinf(g) || std::isinf(w)) {
            ok = g == w;
        } else {
            const double err = std::abs(g - w);
            ok = err <= tol.abs + tol.rel * std::abs(w);
            worst = std::max(worst, err);
        }
        if (!ok && bad++ == 0) first = i;
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << bad << " of " << got.size() << " elements differ; first at " << first << ": got "
           << got[first] << ", expected " << want[first] << " (tol abs " << tol.abs << " rel "
           << tol.rel << "; worst finite error " << worst << ")";
}

}  // namespace fot::testing
