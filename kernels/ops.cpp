#include "kernels/ops.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace xmesh::kernels {

namespace {

float weight_at(const void* w, dtype t, int64_t i) {
  switch (t) {
    case dtype::f32:
      return static_cast<const float*>(w)[i];
    case dtype::bf16:
      return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
    case dtype::f16:
      return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
    default:  // model/weights.cpp binds norms only in these three types
      break;
  }
  return 0.0f;
}

}  // namespace

void rms_norm(const float* x, const void* weight, dtype weight_type, int64_t n, float eps,
              float* out) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  auto scale = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight_at(weight, weight_type, i) * (x[i] * scale);
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

void swiglu(const float* gate, const float* up, int64_t n, float* h) {
  for (int64_t i = 0; i < n; ++i) h[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

void softmax(float* x, int64_t n) {
  float max = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  auto inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void rope(float* x, int64_t num_heads, int64_t head_dim, int64_t position, double theta) {
  int64_t half = head_dim / 2;
  std::vector<float> cos_v(half), sin_v(half);
  for (int64_t i = 0; i < half; ++i) {
    double inv_freq =
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    double angle = static_cast<double>(position) * inv_freq;
    cos_v[i] = static_cast<float>(std::cos(angle));
    sin_v[i] = static_cast<float>(std::sin(angle));
  }
  for (int64_t h = 0; h < num_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      float a = v[i], b = v[i + half];
      v[i] = a * cos_v[i] - b * sin_v[i];
      v[i + half] = b * cos_v[i] + a * sin_v[i];
    }
  }
}

void axpy(float w, const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += w * x[i];
}

}  // namespace xmesh::kernels
