#include "kernels/attention.hpp"

#include <algorithm>

#include "kernels/matmul.hpp"
#include "kernels/ops.hpp"

namespace xmesh::kernels {

void attend_head(const float* q, const float* keys, const float* values, int64_t num_keys,
                 int64_t head_dim, float scale, float* scores, float* out) {
  for (int64_t j = 0; j < num_keys; ++j) scores[j] = dot(q, keys + j * head_dim, head_dim) * scale;
  softmax(scores, num_keys);
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t j = 0; j < num_keys; ++j) axpy(scores[j], values + j * head_dim, head_dim, out);
}

}  // namespace xmesh::kernels
