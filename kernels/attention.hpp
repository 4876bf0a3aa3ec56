// Scaled dot-product attention of one query head over cached keys and values.
#pragma once

#include <cstdint>

namespace xmesh::kernels {

/// out[d] = sum_j softmax_j(scale * q.k_j) v_j[d] for j < num_keys, keys and values stored as
/// rows of `head_dim` floats. `scores` is scratch of num_keys floats. Same arithmetic whether the
/// query comes from a prefill batch or a decode step, so the two agree bit for bit.
void attend_head(const float* q, const float* keys, const float* values, int64_t num_keys,
                 int64_t head_dim, float scale, float* scores, float* out);

}  // namespace xmesh::kernels
