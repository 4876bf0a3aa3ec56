// Matrix products with weights in place (f32, bf16, f16), batch-invariant by construction.
//
// NOTE: every output element is computed in one canonical order, whatever the number of tokens,
// the thread count or the instruction set: a 16-lane f32 FMA accumulation over k in steps of 16
// (missing tail lanes contribute fma(0, 0, acc)), then the lane tree (i, i+8), (i, i+4), (i, i+2),
// (0, 1). That is what makes a token's output independent of the batch it shares (DESIGN.md,
// correctness invariant) and prefill bit-identical to decode.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/core/dtype.hpp"
#include "kernels/core/thread_pool.hpp"

namespace xmesh::kernels {

/// How a matrix's elements are stored. q8, q4 and fp8 are quantized: each weight is an integer
/// or FP8 code times a scale, and the kernels compute with that product, which is exact in f32
/// for q8 and q4 (kernels/quant.hpp, docs/quantization.md).
enum class weight_format : uint8_t { f32, bf16, f16, q8, q4, fp8 };

/// "f32", "bf16", "f16", "q8", "q4", "fp8".
std::string_view format_name(weight_format f);
/// The format of a plain (unquantized) tensor type.
weight_format plain_format(dtype t);

/// A row-major [rows, cols] weight matrix (PyTorch nn.Linear layout [out, in]); does not own.
/// Quantized formats add `scales`: q8 and q4 one f16 per row and group of 32 columns
/// ([rows, cols / 32]), fp8 one f32 per 128 x 128 block ([rows / 128, cols / 128]).
struct matrix_view {
  const void* data = nullptr;
  weight_format format = weight_format::f32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* scales = nullptr;

  /// Bytes of one row of `data` (q4 packs two weights a byte).
  [[nodiscard]] int64_t row_bytes() const;
  [[nodiscard]] const void* row(int64_t r) const {
    return static_cast<const char*>(data) + r * row_bytes();
  }
  [[nodiscard]] int64_t data_bytes() const { return rows * row_bytes(); }
  [[nodiscard]] int64_t scale_bytes() const;
  /// Everything a product reads: data and scales.
  [[nodiscard]] int64_t bytes() const { return data_bytes() + scale_bytes(); }
};

/// Row `r` of `w` as f32: the exact values the kernels multiply with.
void row_to_f32(const matrix_view& w, int64_t r, float* out);

/// y[t * ldy + r] = dot(w.row(r), x + t * ldx) for r in [row_begin, row_end), t < num_tokens.
/// Single-threaded; the building block the parallel callers split by rows.
void matmul_rows(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                 int64_t row_begin, int64_t row_end, float* y, int64_t ldy);

/// All rows of `w`, split across `pool` (rows are never split, so the result is thread-invariant).
void matmul(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w, float* y,
            int64_t ldy, thread_pool& pool);

/// Dot product of two f32 vectors in the canonical order.
float dot(const float* a, const float* b, int64_t n);

/// Which implementation runs: "avx512", "avx2" or "generic" (the best the CPU has, unless forced).
const char* matmul_isa();
/// The implementations this CPU can run, best first; always ends with "generic".
std::vector<std::string> matmul_isas();
/// Runs `isa` (one of matmul_isas(); tests compare them bit for bit); "" restores the best.
void force_matmul_isa(std::string_view isa);

}  // namespace xmesh::kernels
