#include "kernels/topk_gating.hpp"

#include <vector>

#include "kernels/ops.hpp"

namespace xmesh::kernels {

void topk_gating(const float* logits, int64_t num_tokens, int64_t num_experts, int32_t k,
                 bool renormalize, int32_t* expert_ids, float* weights) {
  std::vector<float> p(num_experts);
  std::vector<bool> taken(num_experts);
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::copy(logits + t * num_experts, logits + (t + 1) * num_experts, p.begin());
    softmax(p.data(), num_experts);
    std::fill(taken.begin(), taken.end(), false);
    int32_t* ids = expert_ids + t * k;
    float* w = weights + t * k;
    float sum = 0.0f;
    for (int32_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < num_experts; ++e)
        if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
      taken[best] = true;
      ids[j] = static_cast<int32_t>(best);
      w[j] = p[best];
      sum += p[best];
    }
    if (renormalize)
      for (int32_t j = 0; j < k; ++j) w[j] /= sum;
  }
}

}  // namespace xmesh::kernels
