// An expert cache over a slow tier (docs/edge-policies.md): a budget of experts per MoE layer
// resident in memory, the others read from the node's model files at an emulated rate (a
// phone's flash, an SD card) when a token needs them. Residency follows the eviction of the
// routing policies' logical cache, token by token, so a routing policy sees what is resident.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "model/resident_expert.hpp"
#include "model/routing_policy.hpp"
#include "model/weights.hpp"

namespace xmesh::model {

/// The store's settings: the cache (cache, cache_fraction, decay as in routing_options) and
/// `rate`, the slow tier's read rate in bytes/s.
struct store_options {
  routing_options cache;
  int64_t bytes_per_s = 0;
};

/// Parses "cache_fraction=0.25,cache=lru,rate=100MB" (rate in bytes/s: B, kB, MB, GB); throws one
/// line naming the key.
store_options parse_store_options(const std::string& spec, const model_config& config);

class expert_store {
 public:
  expert_store(const model_config& config, const model_weights& weights, store_options options);

  /// Makes one token's experts at `layer` resident, loading the misses from the slow tier.
  void touch(int64_t layer, const int32_t* experts, int64_t count);
  /// A resident expert's weights.
  [[nodiscard]] const kernels::expert_weights* weights(int64_t layer, int32_t expert) const;
  /// Experts resident at `layer` now (never more than the cache's capacity).
  [[nodiscard]] int64_t resident(int64_t layer) const;
  [[nodiscard]] int64_t capacity() const { return cache_.capacity(); }

  std::atomic<int64_t> hits{0}, misses{0}, bytes_loaded{0};
  std::atomic<double> stall_seconds{0};  // time spent waiting for loads

 private:
  const model_config& config_;
  const model_weights& weights_;
  store_options options_;
  expert_cache_model cache_;
  std::map<int64_t, std::shared_ptr<resident_weights>> resident_;  // layer * experts + expert
};

}  // namespace xmesh::model
