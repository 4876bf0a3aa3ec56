// AVX-512 kernels in the canonical order of kernels/matmul.hpp. Compiled with AVX-512 flags and
// only called when the CPU has them. Tiles of 4 rows x up to 6 tokens reuse each weight load
// across tokens (prefill) while keeping one accumulator per output element. Decode takes one row
// at a time with the next row prefetched: rows are contiguous, so each thread reads one
// sequential stream (as the AVX2 path does).
#include <immintrin.h>

#include "kernels/cpu/matmul_impl.hpp"
#include "kernels/quant.hpp"

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

// -- quantized weights: a group of 32 decoded to two 16-lane halves of exact f32 weights ------

inline __m512 broadcast_f16(uint16_t h) { return _mm512_set1_ps(_cvtsh_ss(h)); }
inline __m512 load_i8x16(const int8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <weight_format F>
struct reader;

template <>
struct reader<weight_format::q8> : quant_view<int8_t, uint16_t> {
  using quant_view::quant_view;

  void load(int64_t r, int64_t k, __m512& lo, __m512& hi) const {
    __m512 s = broadcast_f16(scales[r * (cols / quant::group) + k / quant::group]);
    lo = _mm512_mul_ps(load_i8x16(codes + r * cols + k), s);
    hi = _mm512_mul_ps(load_i8x16(codes + r * cols + k + 16), s);
  }
  const void* at(int64_t r, int64_t k) const { return codes + r * cols + k; }
};

// q4: the 16 possible weights of a group (code x scale, exact) are a table that one permute
// per 16 lanes indexes with the nibbles.
template <>
struct reader<weight_format::q4> : quant_view<uint8_t, uint16_t> {
  using quant_view::quant_view;

  void load(int64_t r, int64_t k, __m512& lo, __m512& hi) const {
    const __m512 values = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    __m512 table =
        _mm512_mul_ps(values, broadcast_f16(scales[r * (cols / quant::group) + k / quant::group]));
    __m512i b = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + (r * cols + k) / 2)));
    lo = _mm512_permutexvar_ps(b, table);  // uses the low 4 bits of each index
    hi = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), table);
  }
  const void* at(int64_t r, int64_t k) const { return codes + (r * cols + k) / 2; }
};

// fp8: e4m3 bytes become f16 bits (quant::fp8_as_f16), widened by the f16 instruction, times the
// block's scale x 256.
template <>
struct reader<weight_format::fp8> : quant_view<uint8_t, float> {  // scales: scale_inv
  using quant_view::quant_view;

  static __m512 widen(const uint8_t* p) {
    // u = b << 7 puts exponent and mantissa at f16 bits 13..7 and the sign at bit 14; adding
    // the sign bit to itself carries it to bit 15.
    __m256i u = _mm256_slli_epi16(
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 7);
    __m256i h = _mm256_add_epi16(u, _mm256_and_si256(u, _mm256_set1_epi16(0x4000)));
    return _mm512_cvtph_ps(h);
  }
  void load(int64_t r, int64_t k, __m512& lo, __m512& hi) const {
    float s = scales[r / quant::fp8_block * (cols / quant::fp8_block) + k / quant::fp8_block];
    __m512 s256 = _mm512_set1_ps(s * 256.0f);
    lo = _mm512_mul_ps(widen(codes + r * cols + k), s256);
    hi = _mm512_mul_ps(widen(codes + r * cols + k + 16), s256);
  }
  const void* at(int64_t r, int64_t k) const { return codes + r * cols + k; }
};

// Quantized rows: a multiple of 32 columns (model/weights.cpp checks), one group per step.
constexpr int quant_decode_rows = 4;  // four FMA chains: one would leave the cores waiting
constexpr int quant_tile_rows = 4;
constexpr int quant_tile_tokens = 4;  // 16 accumulators + 8 weight halves fit the 32 registers

template <class Reader, int R, int T>
void quant_tile(const Reader& w, int64_t r0, const float* x, int64_t ldx, float* y, int64_t ldy) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < w.cols; k += quant::group) {
    __m512 lo[R], hi[R];
    for (int r = 0; r < R; ++r) {
      if constexpr (T == 1)
        _mm_prefetch(static_cast<const char*>(w.at(r0 + r + R, k)), _MM_HINT_T0);
      w.load(r0 + r, k, lo[r], hi[r]);
    }
    for (int t = 0; t < T; ++t) {
      __m512 xlo = _mm512_loadu_ps(x + t * ldx + k), xhi = _mm512_loadu_ps(x + t * ldx + k + 16);
      for (int r = 0; r < R; ++r) {
        acc[r][t] = _mm512_fmadd_ps(lo[r], xlo, acc[r][t]);
        acc[r][t] = _mm512_fmadd_ps(hi[r], xhi, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[t * ldy + r] = reduce(acc[r][t]);
}

// R rows against all tokens, T at a time, then the leftover tokens with smaller tiles.
template <class Reader, int R, int T>
void quant_row_tokens(const Reader& w, int64_t r0, const float* x, int64_t ldx, float* y,
                      int64_t ldy, int64_t num_tokens) {
  if constexpr (T > 0) {
    for (; num_tokens >= T; num_tokens -= T, x += T * ldx, y += T * ldy)
      quant_tile<Reader, R, T>(w, r0, x, ldx, y, ldy);
    quant_row_tokens<Reader, R, T - 1>(w, r0, x, ldx, y, ldy, num_tokens);
  }
}

template <class Reader>
void quant_rows(const Reader& w, const float* x, int64_t num_tokens, int64_t ldx, int64_t row_begin,
                int64_t row_end, float* y, int64_t ldy) {
  int64_t r = row_begin;
  if (num_tokens == 1)
    for (; r + quant_decode_rows <= row_end; r += quant_decode_rows)
      quant_tile<Reader, quant_decode_rows, 1>(w, r, x, ldx, y + r, ldy);
  for (; r + quant_tile_rows <= row_end; r += quant_tile_rows)
    quant_row_tokens<Reader, quant_tile_rows, quant_tile_tokens>(w, r, x, ldx, y + r, ldy,
                                                                 num_tokens);
  for (; r < row_end; ++r)
    quant_row_tokens<Reader, 1, quant_tile_tokens>(w, r, x, ldx, y + r, ldy, num_tokens);
}

}  // namespace

void matmul_rows_avx512(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                        int64_t row_begin, int64_t row_end, float* y, int64_t ldy) {
  with_weights<reader>(
      w, [&](const auto& r) { quant_rows(r, x, num_tokens, ldx, row_begin, row_end, y, ldy); },
      [&](auto* p) { rows(p, w.cols, x, num_tokens, ldx, row_begin, row_end, y, ldy); });
}

float dot_avx512(const float* a, const float* b, int64_t n) {
  float out = 0;
  tile<float, 1, 1>(a, n, b, n, &out, 1);
  return out;
}

}  // namespace xmesh::kernels::cpu
