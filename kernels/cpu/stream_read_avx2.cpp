// A full-width read loop for the bandwidth measurement (compiled with AVX2 flags).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace xmesh::kernels::cpu {

uint64_t stream_read_avx2(const std::byte* p, int64_t size) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 128 <= size; i += 128) {
    // The software prefetch the decode kernels use, a few lines ahead (see the AVX-512 reader).
    for (int l = 0; l < 128; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(p + i + 2048 + l), _MM_HINT_T0);
    a0 = _mm256_xor_si256(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  __m256i x = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  uint64_t out = static_cast<uint64_t>(_mm256_extract_epi64(x, 0) ^ _mm256_extract_epi64(x, 1) ^
                                       _mm256_extract_epi64(x, 2) ^ _mm256_extract_epi64(x, 3));
  for (; i < size; ++i) out += static_cast<uint8_t>(p[i]);
  return out;
}

}  // namespace xmesh::kernels::cpu
