// CUDA versions of the expert FFN and top-k gating, same contracts as the CPU kernels
// (kernels/expert_ffn.hpp, kernels/topk_gating.hpp). Host pointers in and out; the launcher stages
// through device memory. A plain C++ header: no CUDA types leak to callers.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/core/status.hpp"
#include "kernels/expert_ffn.hpp"

namespace xmesh::kernels::cuda {

/// Number of usable devices; 0 (with the reason in `why`) when there is no driver or device.
int device_count(std::string* why);

/// y = down(silu(gate x) * up x) for `num_tokens` rows of x ([num_tokens, hidden]).
status expert_ffn(const float* x, int64_t num_tokens, const expert_weights& w, float* y);

/// Softmax over experts, top-k (ties: lower id), optional renormalisation; k ids/weights per row.
status topk_gating(const float* logits, int64_t num_tokens, int64_t num_experts, int32_t k,
                   bool renormalize, int32_t* expert_ids, float* weights);

}  // namespace xmesh::kernels::cuda
