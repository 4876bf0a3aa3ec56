// AVX2 + FMA kernels in the canonical order of kernels/matmul.hpp, for CPUs without AVX-512
// (most edge devices, many servers). The 16 canonical lanes are two 8-lane halves, so every
// output is bit-identical to the AVX-512 and portable paths. Compiled with AVX2/FMA/F16C flags
// and only called when the CPU has them.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/matmul_impl.hpp"
#include "kernels/quant.hpp"

namespace xmesh::kernels::cpu {

namespace {

// Decode takes one row at a time: rows follow each other in memory, so a thread reads one
// sequential stream (14 GB/s a thread here, against 9.4 when 4 rows are interleaved), and a
// row's two FMA chains keep up with that. Prefill tiles 2 rows x 3 tokens: 12 accumulators and
// 4 weight registers fill AVX2's 16, each weight load serves 3 tokens and each token load 2 rows
// (1.3-1.6x the FLOP/s of 1 row x 6 tokens, which is load-bound).
constexpr int decode_rows = 1;
constexpr int prefill_rows = 2;
constexpr int prefill_tokens = 3;

// The 16 canonical lanes: lo = lanes 0-7, hi = lanes 8-15.
struct v16 {
  __m256 lo, hi;
};

inline v16 load16(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline __m256 widen_bf16(__m128i h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline v16 load16(const bf16_t* p) {
  return {widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
          widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
}
inline v16 load16(const f16_t* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
}

// The last `n` < 16 elements, zero-padded (a zero pair adds fma(0, 0, acc) as the order says).
template <class T>
inline v16 load_tail(const T* p, int64_t n) {
  T buf[16] = {};
  std::memcpy(buf, p, size_t(n) * sizeof(T));
  return load16(buf);
}

inline void fma16(const v16& w, const v16& x, v16& acc) {
  acc.lo = _mm256_fmadd_ps(w.lo, x.lo, acc.lo);
  acc.hi = _mm256_fmadd_ps(w.hi, x.hi, acc.hi);
}

// Lane tree (i, i+8), (i, i+4), (i, i+2), (0, 1): the canonical order.
inline float reduce(const v16& v) {
  __m256 s8 = _mm256_add_ps(v.lo, v.hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

template <class W, int R, int T>
void tile(const W* w, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy) {
  v16 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t k = 0;
  for (; k + 16 <= cols; k += 16) {
    v16 wv[R];
    for (int r = 0; r < R; ++r) {
      // Decode: fetch the next tile's rows (the R rows right after these) while this one runs;
      // the hardware prefetcher alone leaves each new tile to start cold (+20-40 % a thread).
      if constexpr (T == 1)
        _mm_prefetch(reinterpret_cast<const char*>(w + (r + R) * cols + k), _MM_HINT_T0);
      wv[r] = load16(w + r * cols + k);
    }
    for (int t = 0; t < T; ++t) {
      v16 xv = load16(x + t * ldx + k);
      for (int r = 0; r < R; ++r) fma16(wv[r], xv, acc[r][t]);
    }
  }
  if (k < cols) {
    v16 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_tail(w + r * cols + k, cols - k);
    for (int t = 0; t < T; ++t) {
      v16 xv = load_tail(x + t * ldx + k, cols - k);
      for (int r = 0; r < R; ++r) fma16(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[t * ldy + r] = reduce(acc[r][t]);
}

// R rows against all tokens, T at a time, then the leftover tokens with smaller tiles.
template <class W, int R, int T>
void row_tokens(const W* w, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy,
                int64_t num_tokens) {
  if constexpr (T > 0) {
    for (; num_tokens >= T; num_tokens -= T, x += T * ldx, y += T * ldy)
      tile<W, R, T>(w, cols, x, ldx, y, ldy);
    row_tokens<W, R, T - 1>(w, cols, x, ldx, y, ldy, num_tokens);
  }
}

template <class W>
void rows(const W* w, int64_t cols, const float* x, int64_t num_tokens, int64_t ldx,
          int64_t row_begin, int64_t row_end, float* y, int64_t ldy) {
  int64_t r = row_begin;
  if (num_tokens == 1)
    for (; r + decode_rows <= row_end; r += decode_rows)
      tile<W, decode_rows, 1>(w + r * cols, cols, x, ldx, y + r, ldy);
  for (; r + prefill_rows <= row_end; r += prefill_rows)
    row_tokens<W, prefill_rows, prefill_tokens>(w + r * cols, cols, x, ldx, y + r, ldy, num_tokens);
  for (; r < row_end; ++r)
    row_tokens<W, 1, prefill_tokens>(w + r * cols, cols, x, ldx, y + r, ldy, num_tokens);
}

// -- quantized weights: a group of 32 decoded to two v16 halves of exact f32 weights ----------

// The low 8 int8 codes of `codes` times the scale `s` (exact).
inline __m256 scaled(__m128i codes, __m256 s) {
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes)), s);
}

template <weight_format F>
struct reader;

template <>
struct reader<weight_format::q8> : quant_view<int8_t, uint16_t> {
  using quant_view::quant_view;

  void load(int64_t r, int64_t k, v16& lo, v16& hi) const {
    __m256 s = _mm256_set1_ps(_cvtsh_ss(scales[r * (cols / quant::group) + k / quant::group]));
    const int8_t* p = codes + r * cols + k;
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
    lo = {scaled(a, s), scaled(_mm_srli_si128(a, 8), s)};
    hi = {scaled(b, s), scaled(_mm_srli_si128(b, 8), s)};
  }
};

template <>
struct reader<weight_format::q4> : quant_view<uint8_t, uint16_t> {
  using quant_view::quant_view;

  void load(int64_t r, int64_t k, v16& lo, v16& hi) const {
    __m256 s = _mm256_set1_ps(_cvtsh_ss(scales[r * (cols / quant::group) + k / quant::group]));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + (r * cols + k) / 2));
    const __m128i low4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    __m128i l = _mm_sub_epi8(_mm_and_si128(b, low4), eight);  // codes in [-8, 7]
    __m128i h = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), low4), eight);
    lo = {scaled(l, s), scaled(_mm_srli_si128(l, 8), s)};
    hi = {scaled(h, s), scaled(_mm_srli_si128(h, 8), s)};
  }
};

template <>
struct reader<weight_format::fp8> : quant_view<uint8_t, float> {  // scales: scale_inv
  using quant_view::quant_view;

  static v16 widen(const uint8_t* p, __m256 s256) {
    __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8),
                                _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7F)), 7));
    return {_mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), s256),
            _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), s256)};
  }
  void load(int64_t r, int64_t k, v16& lo, v16& hi) const {
    float s = scales[r / quant::fp8_block * (cols / quant::fp8_block) + k / quant::fp8_block];
    __m256 s256 = _mm256_set1_ps(s * 256.0f);
    lo = widen(codes + r * cols + k, s256);
    hi = widen(codes + r * cols + k + 16, s256);
  }
};

// Quantized rows (a multiple of 32 columns): decode takes two rows (two FMA chains each), prefill
// one row against up to 3 tokens, both within the 16 registers.
template <class Reader, int R, int T>
void quant_tile(const Reader& w, int64_t r0, const float* x, int64_t ldx, float* y, int64_t ldy) {
  v16 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t k = 0; k < w.cols; k += quant::group) {
    v16 lo[R], hi[R];
    for (int r = 0; r < R; ++r) w.load(r0 + r, k, lo[r], hi[r]);
    for (int t = 0; t < T; ++t) {
      v16 xlo = load16(x + t * ldx + k), xhi = load16(x + t * ldx + k + 16);
      for (int r = 0; r < R; ++r) {
        fma16(lo[r], xlo, acc[r][t]);
        fma16(hi[r], xhi, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[t * ldy + r] = reduce(acc[r][t]);
}

template <class Reader>
void quant_rows(const Reader& w, const float* x, int64_t num_tokens, int64_t ldx, int64_t row_begin,
                int64_t row_end, float* y, int64_t ldy) {
  int64_t r = row_begin;
  if (num_tokens == 1)
    for (; r + 2 <= row_end; r += 2) quant_tile<Reader, 2, 1>(w, r, x, ldx, y + r, ldy);
  for (; r < row_end; ++r) {
    int64_t t = 0;
    for (; t + 3 <= num_tokens; t += 3)
      quant_tile<Reader, 1, 3>(w, r, x + t * ldx, ldx, y + t * ldy + r, ldy);
    for (; t < num_tokens; ++t)
      quant_tile<Reader, 1, 1>(w, r, x + t * ldx, ldx, y + t * ldy + r, ldy);
  }
}

}  // namespace

void matmul_rows_avx2(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t ldy) {
  with_weights<reader>(
      w, [&](const auto& r) { quant_rows(r, x, num_tokens, ldx, row_begin, row_end, y, ldy); },
      [&](auto* p) { rows(p, w.cols, x, num_tokens, ldx, row_begin, row_end, y, ldy); });
}

float dot_avx2(const float* a, const float* b, int64_t n) {
  float out = 0;
  tile<float, 1, 1>(a, n, b, n, &out, 1);
  return out;
}

}  // namespace xmesh::kernels::cpu
