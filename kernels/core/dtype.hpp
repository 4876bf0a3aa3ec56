// Element types of weights and activations, and exact conversions to f32.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace xmesh::kernels {

/// Storage type of a tensor's elements. The 8-bit types hold quantized weights (kernels/quant.hpp):
/// i8 for q8, u8 for packed q4 nibbles, f8_e4m3 for FP8 checkpoints.
enum class dtype : uint8_t { f32, bf16, f16, i8, u8, f8_e4m3 };

/// Bytes per element.
constexpr size_t dtype_size(dtype t) {
  return t == dtype::f32 ? 4 : t == dtype::bf16 || t == dtype::f16 ? 2 : 1;
}

/// Safetensors spelling ("F32", "BF16", "F16", "I8", "U8", "F8_E4M3").
constexpr std::string_view dtype_name(dtype t) {
  constexpr std::string_view names[] = {"F32", "BF16", "F16", "I8", "U8", "F8_E4M3"};
  return names[static_cast<int>(t)];
}

/// Parses a safetensors dtype; nullopt for types the engine does not read.
std::optional<dtype> parse_dtype(std::string_view name);

/// bf16 is the top half of an f32: widening is exact.
inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

/// Round-to-nearest-even narrowing, NaN kept quiet (what PyTorch does).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

/// IEEE half to f32, exact (subnormals included).
float f16_to_f32(uint16_t h);
/// f32 to IEEE half, round to nearest even.
uint16_t f32_to_f16(float f);

/// Converts `n` elements of type `t` (f32, bf16 or f16) at `src` to f32.
void to_f32(const void* src, dtype t, size_t n, float* dst);

}  // namespace xmesh::kernels
