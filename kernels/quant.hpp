// Quantized weights: the q8, q4 and fp8 layouts, their exact decoding to f32, and the quantizers
// that write them (docs/quantization.md).
//
// NOTE: a q8 or q4 weight is code x scale with an int8/int4 code and an f16 scale: the product has
// at most 19 significant bits, so it is exact in f32 and every kernel computes with exactly the
// weights of the dequantized model, in the canonical order of kernels/matmul.hpp. An fp8 weight
// is the e4m3 value times its block's f32 scale, rounded once to f32, the same way on every path.
#pragma once

#include <cstdint>

#include "kernels/matmul.hpp"

namespace xmesh::kernels::quant {

/// q8 and q4: weights per scale, along a row.
constexpr int64_t group = 32;
/// fp8 (DeepSeek-V3, Qwen3 "FP8"): one scale per block of 128 x 128 weights.
constexpr int64_t fp8_block = 128;

/// q4 rows pack a group of 32 weights in 16 bytes: byte j holds weight j in its low nibble and
/// weight j + 16 in its high nibble, each as code + 8 (codes in [-8, 7]). A 16-lane kernel turns
/// one 16-byte load into both halves of a group.
inline int q4_code(const uint8_t* row, int64_t c) {
  uint8_t b = row[c / group * (group / 2) + c % (group / 2)];
  return (c % group < group / 2 ? b & 0xF : b >> 4) - 8;
}

/// The e4m3 bits moved into an f16 (sign, exponent, mantissa): the value times 2^-8, exactly,
/// subnormals included; the kernels convert with the f16 instructions and fold 2^8 into the scale.
/// The NaN codes (0x7F, 0xFF) read as +-480: quantizers never write them.
inline uint16_t fp8_as_f16(uint8_t b) {
  return static_cast<uint16_t>((b & 0x80) << 8 | (b & 0x7F) << 7);
}
/// Exact value of an e4m3 code.
inline float fp8_to_f32(uint8_t b) { return f16_to_f32(fp8_as_f16(b)) * 256.0f; }
/// Nearest e4m3 code (ties to even), saturating at +-448.
uint8_t f32_to_fp8(float v);

/// Calls `fn(at)` where `at(c)` is weight (r, c) of `w` as the kernels compute with it.
template <class Fn>
void with_row_values(const matrix_view& w, int64_t r, Fn&& fn) {
  const auto* scales16 = static_cast<const uint16_t*>(w.scales) + r * (w.cols / group);
  switch (w.format) {
    case weight_format::f32:
      return fn([p = static_cast<const float*>(w.row(r))](int64_t c) { return p[c]; });
    case weight_format::bf16:
      return fn(
          [p = static_cast<const uint16_t*>(w.row(r))](int64_t c) { return bf16_to_f32(p[c]); });
    case weight_format::f16:
      return fn(
          [p = static_cast<const uint16_t*>(w.row(r))](int64_t c) { return f16_to_f32(p[c]); });
    case weight_format::q8:
      return fn([p = static_cast<const int8_t*>(w.row(r)), scales16](int64_t c) {
        return static_cast<float>(p[c]) * f16_to_f32(scales16[c / group]);
      });
    case weight_format::q4:
      return fn([p = static_cast<const uint8_t*>(w.row(r)), scales16](int64_t c) {
        return static_cast<float>(q4_code(p, c)) * f16_to_f32(scales16[c / group]);
      });
    case weight_format::fp8: {
      const float* s = static_cast<const float*>(w.scales) + r / fp8_block * (w.cols / fp8_block);
      return fn([p = static_cast<const uint8_t*>(w.row(r)), s](int64_t c) {
        return f16_to_f32(fp8_as_f16(p[c])) * (s[c / fp8_block] * 256.0f);
      });
    }
  }
}

/// Symmetric 8-bit: per group, scale = f16(max |w| / 127), code = round(w / scale).
void quantize_q8(const float* w, int64_t rows, int64_t cols, int8_t* codes, uint16_t* scales);
/// Symmetric 4-bit: per group, the weight of largest magnitude m maps to code -8 (scale =
/// f16(m / -8)), the others to round(w / scale) clamped to [-8, 7]; packed as q4_code reads.
void quantize_q4(const float* w, int64_t rows, int64_t cols, uint8_t* packed, uint16_t* scales);
/// FP8 e4m3 per 128 x 128 block: scale_inv = max |w| / 448, code = e4m3(w / scale_inv).
void quantize_fp8(const float* w, int64_t rows, int64_t cols, uint8_t* codes, float* scale_inv);

}  // namespace xmesh::kernels::quant
