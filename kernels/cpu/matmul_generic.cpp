// Portable kernels in the canonical order of kernels/matmul.hpp (bit-identical to AVX-512).
#include <cmath>

#include "kernels/cpu/matmul_impl.hpp"
#include "kernels/quant.hpp"

namespace xmesh::kernels::cpu {

namespace {

constexpr int lanes = 16;

float reduce_lanes(float v[lanes]) {
  for (int width = lanes / 2; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) v[i] = v[i] + v[i + width];
  return v[0];
}

template <class Load>
float canonical_dot(Load w_at, const float* x, int64_t n) {
  float acc[lanes] = {};
  for (int64_t k = 0; k < n; k += lanes)
    for (int l = 0; l < lanes; ++l) {
      bool in = k + l < n;
      acc[l] = std::fma(in ? w_at(k + l) : 0.0f, in ? x[k + l] : 0.0f, acc[l]);
    }
  return reduce_lanes(acc);
}

float row_dot(const matrix_view& w, int64_t r, const float* x) {
  float out = 0;
  quant::with_row_values(w, r, [&](auto at) { out = canonical_dot(at, x, w.cols); });
  return out;
}

}  // namespace

void matmul_rows_generic(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t ldy) {
  for (int64_t r = row_begin; r < row_end; ++r)
    for (int64_t t = 0; t < num_tokens; ++t) y[t * ldy + r] = row_dot(w, r, x + t * ldx);
}

float dot_generic(const float* a, const float* b, int64_t n) {
  return canonical_dot([a](int64_t k) { return a[k]; }, b, n);
}

}  // namespace xmesh::kernels::cpu
