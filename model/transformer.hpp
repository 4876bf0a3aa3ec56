// The dense part of the model (embeddings, attention with its KV cache, norms, LM head) around
// the MoE block; the same code runs prefill batches and decode steps.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "model/expert_backend.hpp"
#include "model/kv_cache.hpp"

namespace xmesh::model {

/// Which positions of a forward pass need logits.
enum class logits_for { last, all };

/// Runs tokens through the model; owns no weights, only scratch.
class transformer {
 public:
  transformer(const model_config& config, const model_weights& weights, kernels::thread_pool& pool,
              expert_backend& experts);

  /// Processes `tokens` at positions cache.length()... and appends them to `cache`. Writes
  /// [rows, vocab] logits: one row (the last token) or one per token.
  void forward(std::span<const int32_t> tokens, kv_cache& cache, logits_for which,
               std::vector<float>& logits);

  [[nodiscard]] const model_config& config() const { return config_; }
  [[nodiscard]] const model_weights& weights() const { return weights_; }
  [[nodiscard]] kernels::thread_pool& pool() { return pool_; }

  /// Called with each MoE layer's normalised input (what its router sees) before the block runs,
  /// and the sequence's logical expert cache when a routing policy is on (else null): routing
  /// statistics (model/routing_stats.hpp) watch through it, and pre-gating prefetch admits its
  /// predictions into both the store and that cache (expert_store::prefetch_after).
  using moe_observer = std::function<void(int64_t layer, const float* x, int64_t num_tokens,
                                          expert_cache_model* routing_cache)>;
  void set_moe_observer(moe_observer observer) { observer_ = std::move(observer); }

  /// Routes with `options` (not enabled: topk_gating). Each sequence's logical expert cache lives
  /// in its kv_cache.
  void set_routing_policy(const routing_options& options) { policy_ = options; }
  [[nodiscard]] const routing_options& routing_policy() const { return policy_; }
  [[nodiscard]] const routing_counters& routing_stats() const { return counters_; }

 private:
  void attention(int64_t layer, const float* x, int64_t num_tokens, kv_cache& cache, float* out);
  void project_qkv(const layer_weights& l, const float* x, int64_t num_tokens);
  void mlp(int64_t layer, const float* x, int64_t num_tokens, kv_cache& cache, float* out);

  const model_config& config_;
  const model_weights& weights_;
  kernels::thread_pool& pool_;
  expert_backend& experts_;
  std::vector<float> q_, k_, v_, attn_;  // scratch
  moe_observer observer_;
  routing_options policy_;
  routing_counters counters_;
};

}  // namespace xmesh::model
