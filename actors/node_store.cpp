#include "actors/node_store.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "actors/expert_host.hpp"
#include "transport/frame.hpp"

namespace xmesh::actors {

using clock_type = std::chrono::steady_clock;

node_store::node_store(const model::loaded_model& model, const model::store_options& options)
    : model_(model),
      capacity_(std::max<int64_t>(1, std::llround(options.cache.cache_fraction *
                                                  static_cast<double>(model.config.num_experts)))),
      eviction_(options.cache.cache),
      decay_(options.cache.decay),
      bytes_per_s_(options.bytes_per_s),
      layers_(static_cast<size_t>(model.config.num_layers)) {
  if (const char* n = std::getenv("XMESH_FAULT_CORRUPT_STORE")) corrupt_next_ = std::atoi(n);
  if (!options.fallback.empty()) {
    fallback_ = model::load_fallback(options.fallback, model.config);
    std::vector<std::span<const std::byte>> parts;
    for (const auto& l : fallback_->weights.layers)
      for (const auto& e : l.experts)
        for (auto region : model::regions_of(e)) parts.push_back(region);
    fallback_checksum_ = transport::checksum_of_parts(parts);
  }
  if (fallback_ || options.prefetch) warmer_ = std::thread([this] { warm_loop(); });
}

node_store::~node_store() {
  {
    std::lock_guard lock(warm_mutex_);
    stopping_ = true;
  }
  warm_wake_.notify_all();
  if (warmer_.joinable()) warmer_.join();
}

int64_t node_store::bytes_loaded() const {
  int64_t n = 0;
  for (const auto& l : layers_) n += l.bytes;
  return n;
}

node_store::lease node_store::acquire(int64_t layer, int64_t expert) {
  return take(layer, expert, true);
}

std::optional<node_store::lease> node_store::try_acquire(int64_t layer, int64_t expert) {
  std::lock_guard lock(mutex_);
  auto it = slots_.find(layer * model_.config.num_experts + expert);
  if (it == slots_.end() || !it->second.copy) return std::nullopt;
  ++it->second.pins;
  return lease(this, it->first, it->second.copy);
}

void node_store::drop_peer_source(int64_t layer, int64_t expert) {
  std::lock_guard tier(tier_);
  const int64_t key = layer * model_.config.num_experts + expert;
  if (peers_.erase(key)) checksums_.erase(key);
}

const kernels::expert_weights* node_store::low_precision(int64_t layer, int64_t expert) const {
  return fallback_ ? &fallback_->weights.layers[layer].experts[expert] : nullptr;
}

void node_store::warm(int64_t layer, int64_t expert) {
  const int64_t key = layer * model_.config.num_experts + expert;
  {
    std::lock_guard lock(mutex_);
    if (slots_.count(key)) return;  // resident or loading
  }
  {
    std::lock_guard lock(warm_mutex_);
    if (!warm_queued_.insert(key).second) return;
    warm_queue_.push_back(key);
  }
  warm_wake_.notify_one();
}

void node_store::warm_loop() {
  for (;;) {
    int64_t key = 0;
    {
      std::unique_lock lock(warm_mutex_);
      warm_wake_.wait(lock, [&] { return stopping_ || !warm_queue_.empty(); });
      if (stopping_) return;
      key = warm_queue_.front();
      warm_queue_.pop_front();
    }
    const int64_t experts = model_.config.num_experts;
    try {
      (void)take(key / experts, key % experts, false);  // loaded, then unpinned at once
    } catch (const std::exception& e) {  // a batch that needs it reads it again (and fails)
      std::fprintf(stderr, "xmesh node store: background load failed: %s\n", e.what());
    }
    std::lock_guard lock(warm_mutex_);
    warm_queued_.erase(key);
  }
}

node_store::lease node_store::take(int64_t layer, int64_t expert, bool counted) {
  const int64_t key = layer * model_.config.num_experts + expert;
  auto& counts = layers_[static_cast<size_t>(layer)];
  const auto start = clock_type::now();
  bool waited = false, missed = false;
  std::unique_lock lock(mutex_);
  for (;;) {
    if (auto it = slots_.find(key); it != slots_.end()) {
      if (!it->second.copy) {  // another batch is loading it
        waited = true;
        changed_.wait(lock);
        continue;
      }
      auto& s = it->second;
      ++s.pins;
      s.score = s.score * std::pow(decay_, static_cast<double>(clock_ + 1 - s.last_use)) + 1;
      s.last_use = ++clock_;
      ++s.uses;
      if (!missed && counted) ++counts.hits;
      if (waited && counted) {  // a background load is no batch waiting
        counts.stall_seconds =
            counts.stall_seconds + std::chrono::duration<double>(clock_type::now() - start).count();
      }
      return lease(this, key, s.copy);
    }
    if (counts.resident >= capacity_) {
      const int64_t out = victim(layer);
      if (out < 0) {  // every resident expert of the layer is computing: wait for one
        waited = true;
        changed_.wait(lock);
        continue;
      }
      resident_bytes_ -= slots_.at(out).copy->bytes;
      slots_.erase(out);
      --counts.resident;
    }
    slots_[key];  // loading: holds its place in the budget
    counts.peak = std::max<int64_t>(counts.peak, ++counts.resident);
    if (counted) ++counts.misses;
    missed = waited = true;
    lock.unlock();
    std::shared_ptr<model::resident_weights> copy;
    std::exception_ptr failed;
    try {
      copy = read(layer, expert);
    } catch (...) {
      failed = std::current_exception();
    }
    lock.lock();
    if (failed) {
      slots_.erase(key);
      --counts.resident;
      changed_.notify_all();
      std::rethrow_exception(failed);
    }
    slots_[key].copy = copy;
    resident_bytes_ += copy->bytes;
    counts.bytes += copy->bytes;
    changed_.notify_all();
  }
}

void node_store::release(int64_t slot) {
  std::lock_guard lock(mutex_);
  if (auto it = slots_.find(slot); it != slots_.end()) --it->second.pins;
  changed_.notify_all();
}

int64_t node_store::victim(int64_t layer) const {
  const int64_t experts = model_.config.num_experts;
  int64_t best = -1;
  const slot* b = nullptr;
  for (auto it = slots_.lower_bound(layer * experts);
       it != slots_.end() && it->first < (layer + 1) * experts; ++it) {
    const auto& s = it->second;
    if (!s.copy || s.pins > 0) continue;
    using eviction = model::routing_options::eviction;
    // activation: scores compared as of now (decayed since each one's last use)
    auto now = [&](const slot& x) {
      return x.score * std::pow(decay_, static_cast<double>(clock_ - x.last_use));
    };
    const bool better =
        !b || (eviction_ == eviction::lfu
                   ? (s.uses < b->uses || (s.uses == b->uses && s.last_use < b->last_use))
               : eviction_ == eviction::activation
                   ? (now(s) < now(*b) || (now(s) == now(*b) && s.last_use < b->last_use))
                   : s.last_use < b->last_use);
    if (better) best = it->first, b = &s;
  }
  return best;
}

void node_store::source_from_peer(int64_t layer, int64_t expert, std::string peer_name,
                                  uint64_t checksum, fetcher fetch) {
  std::lock_guard tier(tier_);
  const int64_t key = layer * model_.config.num_experts + expert;
  checksums_[key] = checksum;
  peers_[key] = {std::move(peer_name), std::move(fetch)};
}

std::shared_ptr<model::resident_weights> node_store::read(int64_t layer, int64_t expert) {
  std::lock_guard tier(tier_);
  const auto& source = model_.weights.layers[layer].experts[expert];
  const int64_t key = layer * model_.config.num_experts + expert;
  const auto peer = peers_.find(key);
  if (!checksums_.count(key)) checksums_[key] = expert_checksum(source);
  for (int attempt = 1;; ++attempt) {
    std::shared_ptr<model::resident_weights> copy;
    if (peer != peers_.end()) {
      copy = peer->second.fetch(bytes_per_s_);
    } else {
      copy = model::copy_expert(source, bytes_per_s_);
      for (auto region : model::regions_of(source))
        model::release_source_pages(region.data(), static_cast<int64_t>(region.size()));
    }
    if (corrupt_next_ > 0) {
      --corrupt_next_;
      *static_cast<std::byte*>(const_cast<void*>(copy->weights.gate.data)) ^= std::byte{1};
    }
    if (expert_checksum(copy->weights) == checksums_.at(key)) {
      if (peer != peers_.end()) bytes_from_peers += copy->bytes;
      return copy;
    }
    ++corrupt_reads;
    if (attempt == 2)
      throw std::runtime_error(
          "expert " + std::to_string(expert) + " of layer " + std::to_string(layer) +
          (peer != peers_.end() ? ": two copies from peer '" + peer->second.name + "'"
                                : ": two reads from the slow tier") +
          " failed their checksum");
  }
}

}  // namespace xmesh::actors
