// The engine in this process with an optional expert store and routing policy, as `xmesh eval`,
// `xmesh generate --expert-store` and `xmesh bench edge` run it (docs/edge-policies.md).
#pragma once

#include <optional>
#include <string>

#include "model/expert_backend.hpp"
#include "model/expert_store.hpp"
#include "model/transformer.hpp"

namespace xmesh::tools {

class local_engine {
 public:
  /// With `store_spec`, experts compute from an expert store; `routing_spec` ("" or "exact": exact
  /// top-k) must keep the store's cache when a policy is on (one cache rule: a policy that
  /// prefers resident experts sees the store's residency), else usage_error. `also` (e.g.
  /// routing statistics), then the store's prefetch, watch every MoE layer's input.
  local_engine(const model::loaded_model& m, kernels::thread_pool& pool,
               const std::optional<std::string>& store_spec, const std::string& routing_spec,
               model::transformer::moe_observer also = {});
  local_engine(const local_engine&) = delete;
  local_engine& operator=(const local_engine&) = delete;

  [[nodiscard]] model::transformer& net() { return net_; }
  /// The store, or null without one.
  [[nodiscard]] model::expert_store* store() { return store_ ? &*store_ : nullptr; }

 private:
  model::local_expert_backend experts_;
  std::optional<model::expert_store> store_;
  model::transformer net_;
};

}  // namespace xmesh::tools
