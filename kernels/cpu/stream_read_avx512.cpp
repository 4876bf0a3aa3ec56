// A full-width read loop for the bandwidth measurement (compiled with AVX-512 flags).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace xmesh::kernels::cpu {

uint64_t stream_read_avx512(const std::byte* p, int64_t size) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 256 <= size; i += 256) {
    // The software prefetch the decode kernels use, a few lines ahead: without it a thread's
    // stream starts each page cold and the measured bandwidth falls short of the kernels'.
    for (int l = 0; l < 256; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(p + i + 2048 + l), _MM_HINT_T0);
    a0 = _mm512_xor_si512(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_loadu_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_loadu_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_loadu_si512(p + i + 192));
  }
  __m512i x = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  uint64_t out = static_cast<uint64_t>(_mm512_reduce_add_epi64(x));
  for (; i < size; ++i) out += static_cast<uint8_t>(p[i]);
  return out;
}

}  // namespace xmesh::kernels::cpu
