// Router gating shared by every softmax-routed family (Mixtral, Qwen-MoE, OLMoE).
#pragma once

#include <cstdint>

namespace xmesh::kernels {

/// For each of `num_tokens` rows of `num_experts` router logits: softmax (f32), pick the `k`
/// largest (ties: lower expert id first), optionally renormalise the k weights to sum to 1.
/// Writes k ids and k weights per row, highest weight first.
void topk_gating(const float* logits, int64_t num_tokens, int64_t num_experts, int32_t k,
                 bool renormalize, int32_t* expert_ids, float* weights);

}  // namespace xmesh::kernels
