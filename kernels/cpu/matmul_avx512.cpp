// AVX-512 kernels in the canonical order of kernels/matmul.hpp. Compiled with AVX-512 flags and
// only called when the CPU has them. Tiles of 4 rows x up to 6 tokens reuse each weight load
// across tokens (prefill) while keeping one accumulator per output element. Decode takes one row
// at a time with the next row prefetched: rows are contiguous, so each thread reads one
// sequential stream (as the AVX2 path does).
#include <immintrin.h>

#include "kernels/cpu/matmul_impl.hpp"

namespace xmesh::kernels::cpu {

namespace {

constexpr int tile_rows = 4;
constexpr int max_tile_tokens = 6;
constexpr int decode_rows = 1;

// -- loads: 16 elements (or the first `n` under a mask) widened to f32 ---------------------

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }

inline __m512 widen_bf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 load16(const bf16_t* p) {
  return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load16(const bf16_t* p, __mmask16 m) {
  return widen_bf16(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 load16(const f16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load16(const f16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

// Lane tree (i, i+8), (i, i+4), (i, i+2), (0, 1): the canonical order.
inline float reduce(__m512 v) {
  __m256 lo = _mm512_castps512_ps256(v);
  __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  __m256 s8 = _mm256_add_ps(lo, hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

template <class W, int R, int T>
void tile(const W* w, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= cols; k += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) {
      // Decode: fetch the next row while this one runs (the hardware prefetcher alone leaves
      // each new row to start cold).
      if constexpr (T == 1)
        _mm_prefetch(reinterpret_cast<const char*>(w + (r + R) * cols + k), _MM_HINT_T0);
      wv[r] = load16(w + r * cols + k);
    }
    for (int t = 0; t < T; ++t) {
      __m512 xv = load16(x + t * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  if (k < cols) {
    auto m = static_cast<__mmask16>((1u << (cols - k)) - 1);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load16(w + r * cols + k, m);
    for (int t = 0; t < T; ++t) {
      __m512 xv = load16(x + t * ldx + k, m);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[t * ldy + r] = reduce(acc[r][t]);
}

template <class W, int R>
void tile_tokens(const W* w, int64_t cols, const float* x, int64_t ldx, int64_t num_tokens,
                 float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + max_tile_tokens <= num_tokens; t += max_tile_tokens)
    tile<W, R, max_tile_tokens>(w, cols, x + t * ldx, ldx, y + t * ldy, ldy);
  const float* xt = x + t * ldx;
  float* yt = y + t * ldy;
  switch (num_tokens - t) {
    case 1:
      tile<W, R, 1>(w, cols, xt, ldx, yt, ldy);
      break;
    case 2:
      tile<W, R, 2>(w, cols, xt, ldx, yt, ldy);
      break;
    case 3:
      tile<W, R, 3>(w, cols, xt, ldx, yt, ldy);
      break;
    case 4:
      tile<W, R, 4>(w, cols, xt, ldx, yt, ldy);
      break;
    case 5:
      tile<W, R, 5>(w, cols, xt, ldx, yt, ldy);
      break;
    default:
      break;
  }
}

template <class W>
void rows(const W* w, int64_t cols, const float* x, int64_t num_tokens, int64_t ldx,
          int64_t row_begin, int64_t row_end, float* y, int64_t ldy) {
  int64_t r = row_begin;
  if (num_tokens == 1)
    for (; r + decode_rows <= row_end; r += decode_rows)
      tile<W, decode_rows, 1>(w + r * cols, cols, x, ldx, y + r, ldy);
  for (; r + tile_rows <= row_end; r += tile_rows)
    tile_tokens<W, tile_rows>(w + r * cols, cols, x, ldx, num_tokens, y + r, ldy);
  for (; r < row_end; ++r) tile_tokens<W, 1>(w + r * cols, cols, x, ldx, num_tokens, y + r, ldy);
}

}  // namespace

void matmul_rows_avx512(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                        int64_t row_begin, int64_t row_end, float* y, int64_t ldy) {
  with_typed_weights(
      w, [&](auto* p) { rows(p, w.cols, x, num_tokens, ldx, row_begin, row_end, y, ldy); });
}

float dot_avx512(const float* a, const float* b, int64_t n) {
  float out = 0;
  tile<float, 1, 1>(a, n, b, n, &out, 1);
  return out;
}

}  // namespace xmesh::kernels::cpu
