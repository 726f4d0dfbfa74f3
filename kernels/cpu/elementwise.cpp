#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/ops.h"

namespace fot::kernels::cpu {

void silu_mul(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; ++i) {
        float g = gate[i];
        out[i] = (g / (1.0f + std::exp(-g))) * up[i];
    }
}

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void embedding(float* out, const int32_t* ids, const void* table, DType table_dtype, int64_t T,
               int64_t C, int64_t row_begin, int64_t rows) {
    const size_t esz = dtype_size(table_dtype);
    for (int64_t t = 0; t < T; ++t) {
        int64_t r = static_cast<int64_t>(ids[t]) - row_begin;
        float* dst = out + t * C;
        if (r < 0 || r >= rows) {
            std::memset(dst, 0, sizeof(float) * C);
            continue;
        }
        const char* src = static_cast<const char*>(table) + static_cast<size_t>(r * C) * esz;
        convert_to_f32(src, table_dtype, dst, C);
    }
}

void rope(float* x, int64_t T, int64_t H, int64_t D, int64_t stride, int64_t first_pos,
          float theta) {
    const int64_t half = D / 2;
    // inv_freq = 1 / theta^(arange(0, D, 2) / D) in fp32, as the reference builds it.
    float inv_freq[1024];
    for (int64_t i = 0; i < half; ++i) {
        float e = static_cast<float>(2 * i) / static_cast<float>(D);
        inv_freq[i] = 1.0f / std::pow(theta, e);
    }
#pragma omp parallel for schedule(static) if (T * H * D > 65536)
    for (int64_t t = 0; t < T; ++t) {
        float cs[512], sn[512];
        const float p = static_cast<float>(first_pos + t);
        for (int64_t i = 0; i < half; ++i) {
            float f = p * inv_freq[i];
            cs[i] = std::cos(f);
            sn[i] = std::sin(f);
        }
        float* row = x + t * stride;
        for (int64_t h = 0; h < H; ++h) {
            float* xh = row + h * D;
            for (int64_t i = 0; i < half; ++i) {
                float x1 = xh[i], x2 = xh[i + half];
                xh[i] = x1 * cs[i] - x2 * sn[i];
                xh[i + half] = x2 * cs[i] + x1 * sn[i];
            }
        }
    }
}

void row_max_sumexp(const float* logits, int64_t T, int64_t V, float* max_out, float* sum_out) {
#pragma omp parallel for schedule(static) if (T > 4)
    for (int64_t t = 0; t < T; ++t) {
        const float* r = logits + t * V;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < V; ++i) m = r[i] > m ? r[i] : m;
        double s = 0.0;
        for (int64_t i = 0; i < V; ++i) s += std::exp(static_cast<double>(r[i] - m));
        max_out[t] = m;
        sum_out[t] = static_cast<float>(s);
    }
}

void logsoftmax_parts(float* parts, const float* logits, int64_t T, int64_t V,
                      const int32_t* targets, int64_t vocab_begin) {
    std::vector<float> mx(static_cast<size_t>(T)), sm(static_cast<size_t>(T));
    row_max_sumexp(logits, T, V, mx.data(), sm.data());
    for (int64_t t = 0; t < T; ++t) {
        const int64_t col = targets[t] < 0 ? -1 : targets[t] - vocab_begin;
        parts[3 * t] = mx[t];
        parts[3 * t + 1] = sm[t];
        parts[3 * t + 2] = (col >= 0 && col < V) ? logits[t * V + col] : 0.0f;
    }
}

void scatter_heads(void* dst, DType dst_dtype, int64_t dst_head_stride, int64_t at, const float* x,
                   int64_t x_stride, int64_t T, int64_t H, int64_t D) {
    const size_t esz = dtype_size(dst_dtype);
    for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
            char* d = static_cast<char*>(dst) +
                      static_cast<size_t>(h * dst_head_stride + (at + t) * D) * esz;
            convert_from_f32(x + t * x_stride + h * D, d, dst_dtype, D);
        }
    }
}

}  // namespace fot::kernels::cpu
