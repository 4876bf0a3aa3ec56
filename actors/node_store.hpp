// An expert node's resident experts under a budget (the cluster file's node key `store:`): the
// node serves every expert the placement gives it, but keeps at most `capacity` of them per layer
// in memory; the others are read from its model files at an emulated slow-tier rate (a phone's
// flash, an SD card) when a batch needs them, checked against the files' checksum, after
// evicting one no batch is computing with (LRU, LFU, or activation-aware: the lowest frequency
// decayed by recency, as EdgeMoE and MoE-Infinity do). The output never changes: every batch
// computes with the full expert, a miss only waits. With a low-precision fallback (`fallback=DIR`,
// a q4 copy of the model, all resident) the head may mark a pair as a miss of its sequence's
// logical cache: it computes with the q4 copy at once while the full one loads in the background
// (HOBBIT), as the single-process store does, so the output matches that run.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "model/expert_store.hpp"
#include "model/resident_expert.hpp"
#include "model/weights.hpp"

namespace xmesh::actors {

class node_store {
 public:
  /// `options` as `xmesh eval --expert-store` takes them (cache_fraction, cache, decay, rate,
  /// fallback, prefetch: loads come from the head's prefetch frames through warm()); throws one
  /// line for a fallback that is not a whole copy of the model.
  node_store(const model::loaded_model& model, const model::store_options& options);
  ~node_store();
  node_store(const node_store&) = delete;
  node_store& operator=(const node_store&) = delete;

  /// A resident expert held while a batch computes with it.
  class lease {
   public:
    lease(node_store* store, int64_t slot, std::shared_ptr<model::resident_weights> copy)
        : store_(store), slot_(slot), copy_(std::move(copy)) {}
    lease(lease&& other) noexcept
        : store_(std::exchange(other.store_, nullptr)),
          slot_(other.slot_),
          copy_(std::move(other.copy_)) {}
    lease& operator=(lease&&) = delete;
    ~lease() {
      if (store_) store_->release(slot_);
    }
    [[nodiscard]] const kernels::expert_weights& weights() const { return copy_->weights; }

   private:
    node_store* store_;
    int64_t slot_;
    std::shared_ptr<model::resident_weights> copy_;
  };

  /// Blocks until expert `expert` of `layer` is resident: at once on a hit; on a miss after an
  /// unused expert of the layer is evicted (waiting for one when all are in use) and the copy is
  /// read. Throws naming the expert when two reads in a row fail their checksum.
  [[nodiscard]] lease acquire(int64_t layer, int64_t expert);
  /// Reads an expert (at most `bytes_per_s`) from somewhere other than the node's files.
  using fetcher = std::function<std::shared_ptr<model::resident_weights>(int64_t bytes_per_s)>;
  /// From now on reads expert `expert` of `layer` with `fetch` from peer `peer_name` (the slow
  /// tier of a node without its own copy), checked against `checksum`, the coordinator's.
  void source_from_peer(int64_t layer, int64_t expert, std::string peer_name, uint64_t checksum,
                        fetcher fetch);
  /// The expert held at once if it is resident now, else nothing (never reads, never waits:
  /// for a transport thread).
  [[nodiscard]] std::optional<lease> try_acquire(int64_t layer, int64_t expert);
  /// Reads the expert from the node's files again (its replica from a peer was retired).
  void drop_peer_source(int64_t layer, int64_t expert);
  /// The fallback's low-precision copy of an expert (always resident), or null without one.
  [[nodiscard]] const kernels::expert_weights* low_precision(int64_t layer, int64_t expert) const;
  [[nodiscard]] bool has_fallback() const { return fallback_.has_value(); }
  /// XXH3 of every expert of the fallback, in order (0 without one): nodes must agree on it.
  [[nodiscard]] uint64_t fallback_checksum() const { return fallback_checksum_; }
  void count_fallbacks(int64_t layer, int64_t rows) { layers_[layer].fallbacks += rows; }
  /// Starts loading an expert in the background unless it is resident or queued (after a pair
  /// computed with its low-precision copy: the full one is there for the next tokens).
  void warm(int64_t layer, int64_t expert);

  [[nodiscard]] int64_t capacity() const { return capacity_; }
  [[nodiscard]] int64_t resident_bytes() const { return resident_bytes_; }

  /// Per layer: hits, misses, resident now and at most so far (never above capacity).
  struct layer_counts {
    std::atomic<int64_t> hits{0}, misses{0}, resident{0}, peak{0};
    std::atomic<int64_t> fallbacks{0};     // pairs computed with the low-precision copy
    std::atomic<int64_t> bytes{0};         // loaded from the slow tier
    std::atomic<double> stall_seconds{0};  // batches waiting for loads or room
  };
  [[nodiscard]] const std::vector<layer_counts>& layers() const { return layers_; }
  /// Bytes loaded from the slow tier, every layer's.
  [[nodiscard]] int64_t bytes_loaded() const;
  std::atomic<int64_t> corrupt_reads{0};
  std::atomic<int64_t> prefetched{0};        // experts a head's prefetch frames asked for
  std::atomic<int64_t> bytes_from_peers{0};  // of bytes_loaded(), the copies read from peers

 private:
  struct slot {
    std::shared_ptr<model::resident_weights> copy;  // null while loading
    int pins = 0;
    uint64_t last_use = 0, uses = 0;
    double score = 0;  // activation: uses decayed by `decay` per batch since, as of last_use
  };
  void release(int64_t slot);
  /// acquire(); `counted` false for the background loader: its load is no batch's hit or miss
  /// (the row that asked for it counts as a fallback).
  lease take(int64_t layer, int64_t expert, bool counted);
  void warm_loop();
  std::shared_ptr<model::resident_weights> read(int64_t layer, int64_t expert);
  /// An expert of `layer` no batch uses, by the eviction policy; -1 when there is none.
  int64_t victim(int64_t layer) const;

  const model::loaded_model& model_;
  int64_t capacity_;
  model::routing_options::eviction eviction_;
  double decay_;
  int64_t bytes_per_s_;
  std::vector<layer_counts> layers_;
  std::atomic<int64_t> resident_bytes_{0};
  std::mutex mutex_;  // guards what follows
  std::condition_variable changed_;
  std::map<int64_t, slot> slots_;  // layer * experts + expert: resident or loading
  uint64_t clock_ = 0;
  std::map<int64_t, uint64_t> checksums_;  // of the files at an expert's first read, or a peer's
  struct peer_source {
    std::string name;
    fetcher fetch;
  };
  std::map<int64_t, peer_source> peers_;  // experts read from a peer (guarded by tier_)
  int corrupt_next_ = 0;                  // fault injection: XMESH_FAULT_CORRUPT_STORE
  std::mutex tier_;                       // one read at a time: the tier's rate is shared
  std::optional<model::loaded_model> fallback_;
  uint64_t fallback_checksum_ = 0;
  // The background loader (warm()): queued keys, loaded one at a time.
  std::mutex warm_mutex_;
  std::condition_variable warm_wake_;
  std::deque<int64_t> warm_queue_;
  std::set<int64_t> warm_queued_;
  bool stopping_ = false;
  std::thread warmer_;
};

}  // namespace xmesh::actors
