#include "model/moe_block.hpp"

#include <algorithm>
#include <numeric>
#include <vector>

#include "kernels/ops.hpp"
#include "kernels/topk_gating.hpp"

namespace xmesh::model {

void dense_mlp_forward(const kernels::expert_weights& mlp, const float* x, int64_t num_tokens,
                       kernels::thread_pool& pool, float* out) {
  kernels::expert_job job{&mlp, x, num_tokens, out};
  kernels::run_experts({&job, 1}, pool);
}

void moe_forward(const model_config& c, const layer_weights& l, int64_t layer_index, const float* x,
                 int64_t num_tokens, expert_backend& backend, kernels::thread_pool& pool,
                 float* out, const routing_context* policy) {
  const int64_t hidden = c.hidden, k = c.top_k;
  std::vector<float> logits(num_tokens * c.num_experts);
  kernels::matmul(x, num_tokens, hidden, l.router, logits.data(), c.num_experts, pool);
  std::vector<int32_t> ids(num_tokens * k);
  std::vector<float> weights(num_tokens * k);
  std::vector<uint8_t> missed;  // per slot, when misses go out marked low-precision
  if (policy != nullptr && policy->options->mark_misses) missed.resize(num_tokens * k);
  if (policy != nullptr)
    route_with_policy(c, *policy->options, *policy->cache, layer_index, logits.data(), num_tokens,
                      ids.data(), weights.data(), *policy->counters,
                      missed.empty() ? nullptr : missed.data());
  else
    kernels::topk_gating(logits.data(), num_tokens, c.num_experts, static_cast<int32_t>(k),
                         c.norm_topk_prob, ids.data(), weights.data());

  std::vector<float> y(num_tokens * k * hidden);
  auto batch = backend.submit(layer_index, x, num_tokens, ids.data(), static_cast<int32_t>(k),
                              y.data(), missed.empty() ? nullptr : missed.data());
  // While the routed experts are out, the shared expert (Qwen2-MoE) runs here.
  std::vector<float> shared, gate;
  if (l.shared_expert) {
    shared.resize(num_tokens * hidden);
    gate.resize(num_tokens);
    dense_mlp_forward(*l.shared_expert, x, num_tokens, pool, shared.data());
    kernels::matmul(x, num_tokens, hidden, l.shared_expert_gate, gate.data(), 1, pool);
  }
  batch->wait();

  std::vector<int32_t> order(k);
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int32_t a, int32_t b) { return ids[t * k + a] < ids[t * k + b]; });
    float* o = out + t * hidden;
    std::fill(o, o + hidden, 0.0f);
    for (int32_t j : order)
      if (ids[t * k + j] >= 0)  // -1: a slot a routing policy skipped
        kernels::axpy(weights[t * k + j], y.data() + (t * k + j) * hidden, hidden, o);
  }
  if (!l.shared_expert) return;
  for (int64_t t = 0; t < num_tokens; ++t)
    kernels::axpy(kernels::sigmoid(gate[t]), shared.data() + t * hidden, hidden, out + t * hidden);
}

}  // namespace xmesh::model
