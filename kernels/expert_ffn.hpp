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

// The steps of one job, for callers that schedule its row blocks themselves
// (shared_expert_jobs). Every output row is one dot product over whole inputs, so any split into
// blocks, in any order, gives the same bits as run_experts.

/// Rows per block of either phase.
inline constexpr int64_t expert_block_rows = 16;
/// Blocks covering `rows` rows.
[[nodiscard]] inline constexpr int64_t expert_blocks(int64_t rows) {
  return (rows + expert_block_rows - 1) / expert_block_rows;
}
/// Floats of a job's gate/up scratch ([tokens, 2 * intermediate]).
[[nodiscard]] int64_t gate_up_floats(const expert_job& job);
/// Phase 1: rows [r0, r1) of gate then up, as one matrix of 2 * intermediate rows.
void gate_up_rows(const expert_job& job, float* gate_up, int64_t r0, int64_t r1);
/// Between the phases, once every gate/up row is done: the SwiGLU product, in the gate half.
void activate(const expert_job& job, float* gate_up);
/// Phase 2: rows [r0, r1) of the down projection (of hidden rows) into job.y.
void down_rows(const expert_job& job, const float* gate_up, int64_t r0, int64_t r1);

}  // namespace xmesh::kernels
