#include "model/expert_store.hpp"

#include <chrono>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace xmesh::model {

store_options parse_store_options(const std::string& spec, const model_config& config) {
  store_options o;
  std::string cache_spec;
  std::istringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.rfind("rate=", 0) != 0) {
      cache_spec += (cache_spec.empty() ? "" : ",") + item;
      continue;
    }
    std::string v = item.substr(5);
    size_t used = 0;
    double number = 0;
    try {
      number = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    std::string unit = v.substr(used);
    double scale = unit == "B" || unit.empty() ? 1
                   : unit == "kB"              ? 1e3
                   : unit == "MB"              ? 1e6
                   : unit == "GB"              ? 1e9
                                               : -1;
    if (used == 0 || scale < 0 || !(number > 0))
      throw std::runtime_error(
          "expert store: rate: expected a positive rate like 100MB (bytes/s: B, kB, MB, GB), got "
          "'" +
          v + "'");
    o.bytes_per_s = static_cast<int64_t>(number * scale);
  }
  for (const char* key : {"cache_aware", "max_rank", "cumulative", "prior", "skip_below"})
    if (cache_spec.find(std::string(key) + "=") != std::string::npos)
      throw std::runtime_error(std::string("expert store: ") + key +
                               ": a routing knob (--routing-policy); the store takes cache, "
                               "cache_fraction, decay and rate");
  try {
    o.cache = parse_routing_options(cache_spec.empty() ? "cache=lru" : cache_spec, config);
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw std::runtime_error("expert store: " + what.substr(what.find(": ") + 2));
  }
  return o;
}

expert_store::expert_store(const model_config& config, const model_weights& weights,
                           store_options options)
    : config_(config), weights_(weights), options_(options), cache_(config, options.cache) {}

void expert_store::touch(int64_t layer, const int32_t* experts, int64_t count) {
  for (int64_t i = 0; i < count; ++i) (cache_.resident(layer, experts[i]) ? hits : misses) += 1;
  cache_.touch(layer, experts, count);
  const int64_t base = layer * config_.num_experts;
  auto start = std::chrono::steady_clock::now();
  for (int32_t e = 0; e < config_.num_experts; ++e) {
    auto at = resident_.find(base + e);
    const bool keep = cache_.resident(layer, e);
    if (keep && at == resident_.end()) {
      auto copy = copy_expert(weights_.layers[layer].experts[e], options_.bytes_per_s);
      bytes_loaded += copy->bytes;
      resident_.emplace(base + e, std::move(copy));
    } else if (!keep && at != resident_.end()) {
      resident_.erase(at);
    }
  }
  stall_seconds = stall_seconds +
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

const kernels::expert_weights* expert_store::weights(int64_t layer, int32_t expert) const {
  auto at = resident_.find(layer * config_.num_experts + expert);
  if (at == resident_.end())
    throw std::logic_error("expert store: expert " + std::to_string(expert) + " of layer " +
                           std::to_string(layer) + " is not resident");
  return &at->second->weights;
}

int64_t expert_store::resident(int64_t layer) const {
  const int64_t base = layer * config_.num_experts;
  return static_cast<int64_t>(std::distance(resident_.lower_bound(base),
                                            resident_.lower_bound(base + config_.num_experts)));
}

}  // namespace xmesh::model
