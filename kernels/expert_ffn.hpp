// The expert FFN (SwiGLU): y = down(silu(gate x) * up x), for several experts at once.
#pragma once

#include <span>
#include <vector>

#include "kernels/matmul.hpp"

namespace xmesh::kernels {

/// One expert's weights: gate and up are [intermediate, hidden], down is [hidden, intermediate].
struct expert_weights {
  matrix_view gate;
  matrix_view up;
  matrix_view down;

  [[nodiscard]] int64_t hidden() const { return gate.cols; }
  [[nodiscard]] int64_t intermediate() const { return gate.rows; }
  [[nodiscard]] int64_t bytes() const { return gate.bytes() + up.bytes() + down.bytes(); }
};

/// One expert applied to `num_tokens` contiguous rows of `x`, writing contiguous rows of `y`.
struct expert_job {
  const expert_weights* weights = nullptr;
  const float* x = nullptr;
  int64_t num_tokens = 0;
  float* y = nullptr;
};

/// Runs every job, splitting rows of all experts across the pool in two phases (gate/up, down),
/// so that even one token routed to k experts keeps every thread busy. Batch-invariant.
void run_experts(std::span<const expert_job> jobs, thread_pool& pool);

}  // namespace xmesh::kernels
