// The MoE block's maths, once: gate -> top-k (family rules) -> experts -> combine in expert order.
#pragma once

#include "model/config.hpp"
#include "model/expert_backend.hpp"
#include "model/routing_policy.hpp"
#include "model/weights.hpp"

namespace xmesh::model {

/// out[t] = sum over chosen experts, ascending expert id, of w[t,e] * expert_e(x[t]), plus the
/// sigmoid-gated shared expert when the layer has one. `x` is the normalised [num_tokens, hidden].
/// With `policy`, the experts are chosen by a routing policy (model/routing_policy.hpp).
void moe_forward(const model_config& config, const layer_weights& layer, int64_t layer_index,
                 const float* x, int64_t num_tokens, expert_backend& backend,
                 kernels::thread_pool& pool, float* out, const routing_context* policy = nullptr);

/// The dense SwiGLU MLP (dense layers, shared expert): out = down(silu(gate x) * up x).
void dense_mlp_forward(const kernels::expert_weights& mlp, const float* x, int64_t num_tokens,
                       kernels::thread_pool& pool, float* out);

}  // namespace xmesh::model
