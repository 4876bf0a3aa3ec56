#include "kernels/core/dtype.hpp"

#include <stdexcept>
#include <string>

namespace xmesh::kernels {

std::optional<dtype> parse_dtype(std::string_view name) {
  for (auto t : {dtype::f32, dtype::bf16, dtype::f16, dtype::i8, dtype::u8, dtype::f8_e4m3})
    if (name == dtype_name(t)) return t;
  return std::nullopt;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t{h & 0x8000u} << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t man = h & 0x3FF;
  if (exp == 0) {  // zero or subnormal: value = man * 2^-24
    float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7E00;
  if (a >= 65520.0f) return sign | 0x7C00;  // rounds to infinity
  if (a < 6.103515625e-05f) {               // subnormal range: multiples of 2^-24
    return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
  }
  uint32_t au = std::bit_cast<uint32_t>(a);
  uint32_t rounded = au + 0x0FFF + ((au >> 13) & 1);
  return sign | static_cast<uint16_t>(((rounded >> 13) - (112u << 10)));
}

void to_f32(const void* src, dtype t, size_t n, float* dst) {
  switch (t) {
    case dtype::f32:
      std::memcpy(dst, src, n * 4);
      return;
    case dtype::bf16:
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    case dtype::f16:
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    default:
      throw std::invalid_argument("to_f32: " + std::string(dtype_name(t)) +
                                  " elements need their scales (kernels/quant.hpp)");
  }
}

}  // namespace xmesh::kernels
