// Routing statistics over scored text, the numbers edge policies are judged against: expert
// popularity per layer (and the exponent of a Zipf fit), how often a token reuses the previous
// token's experts, and how often the next MoE layer's gate, applied to this layer's input,
// predicts that layer's choice (pre-gating).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/weights.hpp"

namespace xmesh::model {

class routing_stats {
 public:
  routing_stats(const model_config& config, const model_weights& weights,
                kernels::thread_pool& pool);

  /// Rows [first, end) of the next forward pass are scored (windows overlap: count each once).
  void scored_rows(int64_t first, int64_t end);
  /// A transformer::moe_observer: layer `layer`'s router input, [num_tokens, hidden].
  void observe(int64_t layer, const float* x, int64_t num_tokens);

  struct layer_report {
    int64_t layer = 0;
    int64_t tokens = 0;
    std::vector<double> share;     // of the routed slots, per expert
    double zipf_exponent = 0;      // s of share ~ rank^-s (least squares in log-log)
    double reuse_previous = 0;     // mean |E(t) & E(t-1)| / k
    double pregate_accuracy = -1;  // mean |predicted & actual| / k of the next MoE layer; -1: last
  };
  [[nodiscard]] std::vector<layer_report> report() const;

 private:
  std::vector<int32_t> top_k(int64_t layer, const float* x, int64_t num_tokens);

  const model_config& config_;
  const model_weights& weights_;
  kernels::thread_pool& pool_;
  int64_t first_ = 0, end_ = 0;
  std::vector<std::vector<int64_t>> counts_;  // [layer][expert]
  std::vector<double> reuse_sum_, pregate_sum_;
  std::vector<int64_t> reuse_n_, pregate_n_, tokens_;
  int64_t predictor_ = -1, predicted_layer_ = -1;  // pending pre-gating prediction
  std::vector<int32_t> predicted_;
};

}  // namespace xmesh::model
