// The two implementations behind kernels/matmul.hpp, chosen at run time.
#pragma once

#include "kernels/matmul.hpp"

namespace xmesh::kernels::cpu {

void matmul_rows_generic(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t ldy);
float dot_generic(const float* a, const float* b, int64_t n);

void matmul_rows_avx512(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                        int64_t row_begin, int64_t row_end, float* y, int64_t ldy);
float dot_avx512(const float* a, const float* b, int64_t n);

}  // namespace xmesh::kernels::cpu
