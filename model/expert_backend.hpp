// The one seam of the MoE block that varies: how routed experts' outputs are obtained.
#pragma once

#include <cstdint>

#include "kernels/core/thread_pool.hpp"
#include "model/weights.hpp"

namespace xmesh::model {

/// Computes routed experts' outputs for a batch; local kernels or expert actors on other nodes.
class expert_backend {
 public:
  virtual ~expert_backend() = default;
  /// For token t < num_tokens and slot j < k: writes expert `expert_ids[t*k+j]` applied to row t
  /// of `x` ([num_tokens, hidden]) into row t*k+j of `y` ([num_tokens * k, hidden]).
  virtual void run(int64_t layer, const float* x, int64_t num_tokens, const int32_t* expert_ids,
                   int32_t k, float* y) = 0;
};

/// Runs every expert in this process with the expert kernels.
class local_expert_backend final : public expert_backend {
 public:
  local_expert_backend(const model_weights& weights, kernels::thread_pool& pool)
      : weights_(weights), pool_(pool) {}
  void run(int64_t layer, const float* x, int64_t num_tokens, const int32_t* expert_ids, int32_t k,
           float* y) override;

 private:
  const model_weights& weights_;
  kernels::thread_pool& pool_;
};

}  // namespace xmesh::model
