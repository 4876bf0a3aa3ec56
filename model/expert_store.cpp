#include "model/expert_store.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include "kernels/topk_gating.hpp"

namespace xmesh::model {

namespace {

// A fast checksum of an expert's bytes (all regions), for telling a bad read from a good one.
uint64_t checksum_of(const kernels::expert_weights& w) {
  uint64_t h = 0;
  for (auto region : regions_of(w))
    h = h * 0x9E3779B97F4A7C15ull ^
        std::hash<std::string_view>{}(
            std::string_view(reinterpret_cast<const char*>(region.data()), region.size()));
  return h;
}

}  // namespace

store_options parse_store_options(const std::string& spec, const model_config& config) {
  store_options o;
  std::string cache_spec;
  std::istringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.rfind("fallback=", 0) == 0) {
      o.fallback = item.substr(9);
      if (o.fallback.empty())
        throw std::runtime_error(
            "expert store: fallback: expected the directory of a q4 copy (xmesh quantize)");
      continue;
    }
    if (item.rfind("prefetch=", 0) == 0) {
      if (item != "prefetch=0" && item != "prefetch=1")
        throw std::runtime_error("expert store: prefetch: expected 0 or 1, got '" + item.substr(9) +
                                 "'");
      o.prefetch = item == "prefetch=1";
      continue;
    }
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
          "expert store: rate: expected a positive rate like 100MB (bytes/s: B, kB, MB, GB), "
          "got '" +
          v + "'");
    o.bytes_per_s = static_cast<int64_t>(number * scale);
  }
  for (const char* key : {"cache_aware", "max_rank", "cumulative", "prior", "skip_below"})
    if (cache_spec.find(std::string(key) + "=") != std::string::npos)
      throw std::runtime_error(std::string("expert store: ") + key +
                               ": a routing knob (--routing-policy); the store takes cache, "
                               "cache_fraction, decay, rate and fallback");
  try {
    o.cache = parse_routing_options(cache_spec.empty() ? "cache=lru" : cache_spec, config);
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw std::runtime_error("expert store: " + what.substr(what.find(": ") + 2));
  }
  return o;
}

loaded_model load_fallback(const std::filesystem::path& dir, const model_config& config) {
  loaded_model m = load_model(dir);
  const auto& f = m.config;
  if (f.num_layers != config.num_layers || f.num_experts != config.num_experts ||
      f.hidden != config.hidden || f.expert_intermediate != config.expert_intermediate ||
      f.decoder_sparse_step != config.decoder_sparse_step ||
      f.mlp_only_layers != config.mlp_only_layers || m.weights.partial)
    throw std::runtime_error("expert store: fallback: " + dir.string() +
                             " is not a whole copy of this model");
  return m;
}

expert_store::expert_store(const model_config& config, const model_weights& weights,
                           store_options options)
    : config_(config),
      weights_(weights),
      options_(std::move(options)),
      cache_(config, options_.cache) {
  if (!options_.fallback.empty()) fallback_ = load_fallback(options_.fallback, config);
  // Each expert's checksum, from the files as they are now: a read from the slow tier that
  // does not match is refused and read again (XMESH_FAULT_CORRUPT_STORE=N corrupts the first N
  // reads, for tests).
  for (int64_t l = 0; l < config.num_layers; ++l)
    for (const auto& e : weights.layers[l].experts)
      if (e.gate.data != nullptr) checksums_[&e] = checksum_of(e);
  if (const char* n = std::getenv("XMESH_FAULT_CORRUPT_STORE")) corrupt_next_ = std::atoi(n);
  loader_ = std::thread([this] { load_loop(); });
}

expert_store::~expert_store() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();  // waiters (none: the compute thread is here) would see broken_promise
  }
  wake_.notify_all();
  loader_.join();
}

void expert_store::load_loop() {
  for (;;) {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    pending_load next = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    if (!*next.wanted) {  // evicted before its turn: nobody will wait for it
      next.done.set_value(nullptr);
      continue;
    }
    try {
      std::shared_ptr<resident_weights> copied;
      for (int attempt = 1;; ++attempt) {
        copied = copy_expert(*next.source, options_.bytes_per_s);
        bytes_loaded += copied->bytes;
        if (corrupt_next_ > 0) {
          --corrupt_next_;
          *static_cast<std::byte*>(const_cast<void*>(copied->weights.gate.data)) ^= std::byte{1};
        }
        if (checksum_of(copied->weights) == checksums_.at(next.source)) break;
        ++corrupt_reads;
        if (attempt == 2)
          throw std::runtime_error(
              "expert store: an expert's copy from the slow tier failed its "
              "checksum twice; nothing computed from it");
      }
      next.done.set_value(std::move(copied));
    } catch (...) {  // the token that waits for it sees the error, the node does not crash
      next.done.set_exception(std::current_exception());
    }
  }
}

expert_store::copy expert_store::enqueue(int64_t layer, int32_t expert) {
  std::promise<std::shared_ptr<resident_weights>> done;
  copy result = done.get_future().share();
  auto wanted = std::make_shared<std::atomic<bool>>(true);
  wanted_[layer * config_.num_experts + expert] = wanted;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back({&weights_.layers[layer].experts[expert], std::move(done), wanted});
  }
  wake_.notify_one();
  return result;
}

void expert_store::reset() {
  cache_ = expert_cache_model(config_, options_.cache);
  predicted_.clear();
  for (auto& [slot, wanted] : wanted_) *wanted = false;
  wanted_.clear();
  copies_.clear();
  current_.clear();
}

void expert_store::touch(int64_t layer, const int32_t* experts, int64_t count) {
  const int64_t base = layer * config_.num_experts;
  std::vector<bool> was_resident(count);
  for (int64_t i = 0; i < count; ++i) {
    was_resident[i] = cache_.resident(layer, experts[i]);
    (was_resident[i] ? hits : misses) += 1;
  }
  if (auto p = predicted_.find(layer); p != predicted_.end()) {  // how the prefetch did
    for (int64_t i = 0; i < count; ++i)
      prefetch_hits += std::count(p->second.begin(), p->second.end(), experts[i]) > 0;
    prefetch_used += count;
    predicted_.erase(p);
  }
  admit(layer, experts, count);
  transient_.clear();
  for (int32_t e = 0; e < config_.num_experts; ++e) current_.erase(base + e);
  for (int64_t i = 0; i < count; ++i) {
    const int32_t e = experts[i];
    const bool cached = cache_.resident(layer, e);  // false: a miss below load_rank
    auto at = copies_.find(base + e);
    if (!was_resident[i] && fallback_) {  // compute now with the low-precision copy
      current_[base + e] = &fallback_->weights.layers[layer].experts[e];
      ++fallbacks;
      continue;
    }
    auto start = std::chrono::steady_clock::now();
    if (cached) {
      current_[base + e] = &at->second.get()->weights;
    } else {  // read for this token only
      transient_.push_back(enqueue(layer, e).get());
      current_[base + e] = &transient_.back()->weights;
    }
    stall_seconds = stall_seconds +
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
}

void expert_store::admit(int64_t layer, const int32_t* experts, int64_t count) {
  const int64_t base = layer * config_.num_experts;
  cache_.touch(layer, experts, count);
  for (int32_t e = 0; e < config_.num_experts; ++e) {
    if (cache_.resident(layer, e)) {  // admitted: its load starts
      if (!copies_.count(base + e)) copies_.emplace(base + e, enqueue(layer, e));
      continue;
    }
    copies_.erase(base + e);  // evicted: dropped, its load cancelled
    if (auto w = wanted_.find(base + e); w != wanted_.end()) {
      *w->second = false;
      wanted_.erase(w);
    }
  }
}

pregate_prediction predict_next_experts(const model_config& config, const model_weights& weights,
                                        int64_t layer, const float* x, kernels::thread_pool& pool) {
  pregate_prediction p;
  int64_t next = layer + 1;
  while (next < config.num_layers && !weights.layers[next].moe) ++next;
  if (next == config.num_layers) return p;
  std::vector<float> logits(config.num_experts), w(config.top_k);
  p.layer = next;
  p.experts.resize(config.top_k);
  kernels::matmul(x, 1, config.hidden, weights.layers[next].router, logits.data(),
                  config.num_experts, pool);
  kernels::topk_gating(logits.data(), 1, config.num_experts, config.top_k, false, p.experts.data(),
                       w.data());
  return p;
}

void expert_store::prefetch_after(int64_t layer, const float* x, int64_t num_tokens,
                                  kernels::thread_pool& pool, expert_cache_model* routing_cache) {
  if (!options_.prefetch || num_tokens != 1) return;  // decode steps only
  auto p = predict_next_experts(config_, weights_, layer, x, pool);
  if (p.layer < 0) return;
  const auto k = static_cast<int64_t>(p.experts.size());
  predicted_[p.layer] = p.experts;
  prefetch_predicted += k;
  admit(p.layer, p.experts.data(), k);
  if (routing_cache) routing_cache->touch(p.layer, p.experts.data(), k);
}

const kernels::expert_weights* expert_store::weights(int64_t layer, int32_t expert) const {
  auto at = current_.find(layer * config_.num_experts + expert);
  if (at == current_.end())
    throw std::logic_error("expert store: expert " + std::to_string(expert) + " of layer " +
                           std::to_string(layer) + " was not touched for this token");
  return at->second;
}

int64_t expert_store::resident(int64_t layer) const {
  const int64_t base = layer * config_.num_experts;
  return static_cast<int64_t>(
      std::distance(copies_.lower_bound(base), copies_.lower_bound(base + config_.num_experts)));
}

}  // namespace xmesh::model
