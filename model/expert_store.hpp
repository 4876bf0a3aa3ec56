// An expert cache over a slow tier (docs/edge-policies.md): a budget of experts per MoE layer
// resident in memory, the others read from the node's model files at an emulated rate (a
// phone's flash, an SD card) by one loader thread when a token needs them. Residency follows the
// eviction of the routing policies' logical cache, token by token, so a routing policy sees
// what is resident. With a low-precision fallback (a q4 copy of the model, all resident), a
// miss computes with the q4 expert at once while the full one loads for the next tokens.
//
// NOTE: which copy a token computes with depends only on the logical cache (resident before
// this token: full precision; else the fallback), never on load timing: a late load stalls,
// it does not change the output.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/resident_expert.hpp"
#include "model/routing_policy.hpp"
#include "model/weights.hpp"

namespace xmesh::model {

/// The store's settings: the cache (cache, cache_fraction, decay as in routing_options), `rate`,
/// the slow tier's read rate in bytes/s, and `fallback`, a low-precision copy of the model.
struct store_options {
  routing_options cache;
  int64_t bytes_per_s = 0;
  std::filesystem::path fallback;
  /// Pre-gating: in a decode step, the next MoE layer's gate applied to this layer's input
  /// predicts its experts, which enter the cache (their loads start) before that layer runs.
  bool prefetch = false;
};

/// Parses "cache_fraction=0.25,cache=lru,rate=100MB,fallback=DIR" (rate in bytes/s: B, kB, MB,
/// GB); throws one line naming the key.
store_options parse_store_options(const std::string& spec, const model_config& config);

/// Pre-gating (Pre-gated MoE, AdapMoE): the MoE layer after `layer` and its top-k experts
/// predicted by that layer's gate applied to `x`, one token's router input at `layer`.
struct pregate_prediction {
  int64_t layer = -1;  // -1: `layer` is the last MoE layer
  std::vector<int32_t> experts;
};
pregate_prediction predict_next_experts(const model_config& config, const model_weights& weights,
                                        int64_t layer, const float* x, kernels::thread_pool& pool);

/// Loads a low-precision copy of the model (`fallback=`); throws one line when it is not a whole
/// copy of a model of `config`'s shapes.
loaded_model load_fallback(const std::filesystem::path& dir, const model_config& config);

class expert_store {
 public:
  expert_store(const model_config& config, const model_weights& weights, store_options options);
  ~expert_store();
  expert_store(const expert_store&) = delete;
  expert_store& operator=(const expert_store&) = delete;

  /// Makes one token's experts at `layer` the ones weights() gives: resident full-precision
  /// copies (waiting for a load still under way), or for misses the fallback's copy (without a
  /// fallback, the miss's load is waited for).
  void touch(int64_t layer, const int32_t* experts, int64_t count);
  /// The weights the current token computes expert `expert` of `layer` with.
  [[nodiscard]] const kernels::expert_weights* weights(int64_t layer, int32_t expert) const;
  /// After layer `layer`'s router input `x` is known (a transformer::moe_observer): with
  /// prefetch on, admits the next MoE layer's predicted experts, and into `routing_cache` too
  /// (a routing policy's logical cache, kept with the same settings: both stay the same, so the
  /// policy sees prefetched experts as resident). Deterministic: it depends on `x` only.
  void prefetch_after(int64_t layer, const float* x, int64_t num_tokens, kernels::thread_pool& pool,
                      expert_cache_model* routing_cache = nullptr);
  /// Starts over with an empty cache (a new sequence); loads under way finish unused.
  void reset();
  /// Full-precision experts resident or loading at `layer` (never more than the capacity).
  [[nodiscard]] int64_t resident(int64_t layer) const;
  [[nodiscard]] int64_t capacity() const { return cache_.capacity(); }
  [[nodiscard]] const store_options& options() const { return options_; }

  std::atomic<int64_t> hits{0}, misses{0}, bytes_loaded{0}, fallbacks{0};
  std::atomic<int64_t> corrupt_reads{0};  // reads refused by their checksum (then read again)
  // Pre-gating: experts predicted, experts then used, and how many of those were predicted.
  std::atomic<int64_t> prefetch_predicted{0}, prefetch_used{0}, prefetch_hits{0};
  std::atomic<double> stall_seconds{0};  // the compute thread waiting for loads

 private:
  using copy = std::shared_future<std::shared_ptr<resident_weights>>;
  copy enqueue(int64_t layer, int32_t expert);
  /// The cache takes `experts` (evicting others); copies follow: loads start, evicted go.
  void admit(int64_t layer, const int32_t* experts, int64_t count);
  void load_loop();

  const model_config& config_;
  const model_weights& weights_;
  store_options options_;
  expert_cache_model cache_;
  std::optional<loaded_model> fallback_;
  std::map<int64_t, copy> copies_;  // layer * experts + expert: loaded or loading
  std::map<int64_t, const kernels::expert_weights*> current_;  // the token's choice per expert
  std::vector<std::shared_ptr<resident_weights>> transient_;   // uncached reads of this token
  // The loader: one thread, so loads share the slow tier's rate as a device's reads do.
  std::mutex mutex_;
  std::condition_variable wake_;
  struct pending_load {
    const kernels::expert_weights* source;
    std::promise<std::shared_ptr<resident_weights>> done;
    std::shared_ptr<std::atomic<bool>> wanted;  // false once evicted: skipped if not started
  };
  std::deque<pending_load> queue_;
  std::map<int64_t, std::shared_ptr<std::atomic<bool>>> wanted_;  // per queued copy
  std::map<const kernels::expert_weights*, uint64_t> checksums_;  // of the files, at start
  int corrupt_next_ = 0;
  std::map<int64_t, std::vector<int32_t>> predicted_;  // layer -> prefetched experts // fault
                                                       // injection (loader)
  bool stopping_ = false;
  std::thread loader_;
};

}  // namespace xmesh::model
