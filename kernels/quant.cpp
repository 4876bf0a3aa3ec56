#include "kernels/quant.hpp"

#include <algorithm>
#include <cmath>

namespace xmesh::kernels::quant {

uint8_t f32_to_fp8(float v) {
  uint8_t sign = std::signbit(v) ? 0x80 : 0;
  float a = std::fabs(v);
  if (std::isnan(v) || a == 0) return sign;
  if (a >= 448.0f) return sign | 0x7E;
  int e = std::ilogb(a);  // a = 1.m x 2^e
  if (e < -6) {           // subnormal: multiples of 2^-9 (code 8 is the smallest normal, 2^-6)
    return sign | static_cast<uint8_t>(std::nearbyint(std::ldexp(a, 9)));
  }
  auto m = static_cast<int>(std::nearbyint(std::ldexp(a, 3 - e)));  // in [8, 16]
  if (m == 16) m = 8, ++e;
  if (e > 8) return sign | 0x7E;
  return sign | static_cast<uint8_t>((e + 7) << 3 | (m - 8));
}

void quantize_q8(const float* w, int64_t rows, int64_t cols, int8_t* codes, uint16_t* scales) {
  for (int64_t i = 0; i < rows * cols; i += group) {
    float amax = 0;
    for (int64_t j = 0; j < group; ++j) amax = std::max(amax, std::fabs(w[i + j]));
    uint16_t s = f32_to_f16(std::min(amax / 127.0f, 65504.0f));  // the largest finite f16
    float sf = f16_to_f32(s);
    for (int64_t j = 0; j < group; ++j)
      codes[i + j] =
          sf == 0 ? int8_t{0}
                  : static_cast<int8_t>(std::clamp(std::nearbyint(w[i + j] / sf), -127.0f, 127.0f));
    scales[i / group] = s;
  }
}

void quantize_q4(const float* w, int64_t rows, int64_t cols, uint8_t* packed, uint16_t* scales) {
  for (int64_t i = 0; i < rows * cols; i += group) {
    float m = 0;
    for (int64_t j = 0; j < group; ++j)
      if (std::fabs(w[i + j]) > std::fabs(m)) m = w[i + j];
    uint16_t s = f32_to_f16(std::clamp(m / -8.0f, -65504.0f, 65504.0f));
    float sf = f16_to_f32(s);
    auto code = [&](int64_t j) {
      float q = sf == 0 ? 0.0f : std::clamp(std::nearbyint(w[i + j] / sf), -8.0f, 7.0f);
      return static_cast<uint8_t>(static_cast<int>(q) + 8);
    };
    for (int64_t j = 0; j < group / 2; ++j)
      packed[i / 2 + j] = static_cast<uint8_t>(code(j) | code(j + group / 2) << 4);
    scales[i / group] = s;
  }
}

void quantize_fp8(const float* w, int64_t rows, int64_t cols, uint8_t* codes, float* scale_inv) {
  const int64_t block_cols = cols / fp8_block;
  for (int64_t br = 0; br < rows / fp8_block; ++br)
    for (int64_t bc = 0; bc < block_cols; ++bc) {
      auto each = [&](auto fn) {
        for (int64_t r = br * fp8_block; r < (br + 1) * fp8_block; ++r)
          for (int64_t c = bc * fp8_block; c < (bc + 1) * fp8_block; ++c) fn(r * cols + c);
      };
      float amax = 0;
      each([&](int64_t i) { amax = std::max(amax, std::fabs(w[i])); });
      float s = amax == 0 ? 1.0f : amax / 448.0f;
      each([&](int64_t i) { codes[i] = f32_to_fp8(w[i] / s); });
      scale_inv[br * block_cols + bc] = s;
    }
}

}  // namespace xmesh::kernels::quant
