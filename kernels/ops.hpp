// Element-wise and row-wise operations of the transformer, in f32. Each is deterministic and
// depends only on its own row, so batching never changes a token's result.
#pragma once

#include <cstdint>

#include "kernels/core/dtype.hpp"

namespace xmesh::kernels {

/// out = x / sqrt(mean(x^2) + eps) * weight, over one row of `n` (weight in its storage type).
void rms_norm(const float* x, const void* weight, dtype weight_type, int64_t n, float eps,
              float* out);

/// h[i] = silu(gate[i]) * up[i]: the SwiGLU activation.
void swiglu(const float* gate, const float* up, int64_t n, float* h);

/// Numerically stable softmax of one row, in place.
void softmax(float* x, int64_t n);

/// Rotary embedding, HF `rotate_half` convention, on `num_heads` heads of `head_dim` at `position`.
void rope(float* x, int64_t num_heads, int64_t head_dim, int64_t position, double theta);

/// y += w * x over `n` elements.
void axpy(float w, const float* x, int64_t n, float* y);

/// 1 / (1 + exp(-x)).
float sigmoid(float x);

}  // namespace xmesh::kernels
