// The implementations behind kernels/matmul.hpp, chosen at run time.
#pragma once

#include "kernels/matmul.hpp"

namespace xmesh::kernels::cpu {

/// Tags for 16-bit weight elements, so the vector kernels overload their loads on them.
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

/// Calls `rows(p)` with plain (f32, bf16, f16) weights as a typed pointer: const float*,
/// const bf16_t* or const f16_t*. Quantized formats have kernels of their own.
template <class Rows>
void with_typed_weights(const matrix_view& w, Rows&& rows) {
  switch (w.format) {
    case weight_format::f32:
      return rows(static_cast<const float*>(w.data));
    case weight_format::bf16:
      return rows(static_cast<const bf16_t*>(w.data));
    case weight_format::f16:
      return rows(static_cast<const f16_t*>(w.data));
    default:
      break;
  }
}

/// A quantized matrix's typed pointers, which each ISA's readers decode from.
template <class Code, class Scale>
struct quant_view {
  const Code* codes;
  const Scale* scales;
  int64_t cols;
  explicit quant_view(const matrix_view& w)
      : codes(static_cast<const Code*>(w.data)),
        scales(static_cast<const Scale*>(w.scales)),
        cols(w.cols) {}
};

/// Calls `quant(reader)` with the ISA's `Reader<format>` of a quantized matrix (constructed from
/// the view), else `plain(p)` as with_typed_weights does.
template <template <weight_format> class Reader, class Quant, class Plain>
void with_weights(const matrix_view& w, Quant&& quant, Plain&& plain) {
  switch (w.format) {
    case weight_format::q8:
      return quant(Reader<weight_format::q8>(w));
    case weight_format::q4:
      return quant(Reader<weight_format::q4>(w));
    case weight_format::fp8:
      return quant(Reader<weight_format::fp8>(w));
    default:
      return with_typed_weights(w, plain);
  }
}

void matmul_rows_generic(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t ldy);
float dot_generic(const float* a, const float* b, int64_t n);

void matmul_rows_avx2(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t ldy);
float dot_avx2(const float* a, const float* b, int64_t n);

void matmul_rows_avx512(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                        int64_t row_begin, int64_t row_end, float* y, int64_t ldy);
float dot_avx512(const float* a, const float* b, int64_t n);

}  // namespace xmesh::kernels::cpu
