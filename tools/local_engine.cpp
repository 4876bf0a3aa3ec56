#include "tools/local_engine.hpp"

#include "model/routing_policy.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

local_engine::local_engine(const model::loaded_model& m, kernels::thread_pool& pool,
                           const std::optional<std::string>& store_spec,
                           const std::string& routing_spec, model::transformer::moe_observer also)
    : experts_(m.weights, pool), net_(m.config, m.weights, pool, experts_) {
  if (store_spec) {
    store_.emplace(m.config, m.weights, model::parse_store_options(*store_spec, m.config));
    experts_.set_store(&*store_);
  }
  net_.set_routing_policy(model::parse_routing_options(routing_spec, m.config));
  if (net_.routing_policy().enabled && store_ &&
      !net_.routing_policy().same_cache(store_->options().cache))
    throw usage_error(
        "--routing-policy and --expert-store: give both the same cache, cache_fraction, decay "
        "and load_rank");
  const bool prefetch = store_ && store_->options().prefetch;
  if (prefetch || also)
    net_.set_moe_observer([this, &pool, prefetch, also = std::move(also)](
                              int64_t l, const float* x, int64_t n, model::expert_cache_model* c) {
      if (also) also(l, x, n, c);
      if (prefetch) store_->prefetch_after(l, x, n, pool, c);
    });
}

}  // namespace xmesh::tools
