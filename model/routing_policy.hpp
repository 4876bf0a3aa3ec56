// Routing policies of the MoE block (docs/edge-policies.md): exact top-k by default; optionally
// cache-aware routing that prefers experts resident in a node's expert cache (the variants of
// Mixture of Cache-Conditional Experts, arXiv 2412.00099) and dynamic top-k that skips experts
// of small weight. They change which experts compute, so they live in the MoE block, not in the
// router.
//
// NOTE: a policy reads a *logical* cache per sequence, updated token by token (in order) from
// the routing itself, never from load timing or other requests: the same request with the same
// settings routes the same way in every run, batched or not.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"

namespace xmesh::model {

/// A policy's switches and knobs; all off (the default) is exact routing.
struct routing_options {
  enum class preference { off, max_rank, cumulative, prior };
  enum class eviction { lru, lfu, activation };

  preference prefer = preference::off;  // cache_aware=
  int64_t max_rank = 0;                 // max_rank: candidates are the top max_rank experts
  double cumulative = 0;                // cumulative: candidates hold this much router probability
  double prior = 0;                     // prior: added to resident experts' router logits
  double skip_below = 0;                // dynamic top-k: drop experts under this share of weight
  eviction cache = eviction::lru;       // the logical cache's eviction
  double cache_fraction = 0.25;         // experts per layer it holds, as a fraction
  double decay = 0.9;                   // activation-aware: per-token decay of an expert's score
  int64_t load_rank =
      0;  // only a token's first load_rank experts enter the cache on a miss (0: all)
  /// Route through the policy path with its logical cache (any spec but "exact"): with
  /// cache_aware=off and no skipping it picks exactly the top-k and only counts cache hits.
  bool enabled = false;
  /// Not a knob: set by a head whose expert nodes' stores keep a low-precision fallback. The
  /// experts a token misses in the logical cache go to the backend marked low-precision, so they
  /// compute as the single-process store computes its misses (docs/edge-policies.md).
  bool mark_misses = false;

  [[nodiscard]] bool exact() const { return prefer == preference::off && skip_below == 0; }
  /// Whether `other` keeps its cache the same way (eviction, size, decay, load_rank).
  [[nodiscard]] bool same_cache(const routing_options& other) const {
    return cache == other.cache && cache_fraction == other.cache_fraction && decay == other.decay &&
           load_rank == other.load_rank;
  }
  /// The spec text parse_routing_options reads back ("exact" when all off).
  [[nodiscard]] std::string text() const;
};

/// Parses "key=value,..." (keys: cache_aware=off|max_rank|cumulative|prior, max_rank, cumulative,
/// prior, skip_below, cache=lru|lfu|activation, cache_fraction, decay, load_rank) or "exact";
/// throws one line naming the key and what it accepts. Checks the knobs against `config` (e.g.
/// max_rank in [top_k, experts], a cache that holds at least top_k experts).
routing_options parse_routing_options(const std::string& spec, const model_config& config);

/// One sequence's logical expert cache: per MoE layer, which experts are resident.
class expert_cache_model {
 public:
  expert_cache_model(const model_config& config, const routing_options& options);

  [[nodiscard]] bool resident(int64_t layer, int32_t expert) const;
  /// Whether `layer` has room for one more expert without evicting.
  [[nodiscard]] bool has_room(int64_t layer) const { return resident_count_[layer] < capacity_; }
  /// One token's experts at `layer`, highest weight first: the missing ones enter the cache
  /// (evicting others) unless they rank below load_rank.
  void touch(int64_t layer, const int32_t* experts, int64_t count);

  [[nodiscard]] int64_t capacity() const { return capacity_; }

 private:
  struct entry {
    double score = 0;
    int64_t last_use = -1;
    bool resident = false;
  };
  std::vector<std::vector<entry>> layers_;
  std::vector<int64_t> resident_count_;
  int64_t capacity_ = 0, clock_ = 0;
  routing_options::eviction eviction_;
  double decay_;
  int64_t load_rank_;
};

/// Counters a policy keeps over every sequence it routes.
struct routing_counters {
  std::atomic<int64_t> routed{0};   // experts chosen (after skipping)
  std::atomic<int64_t> hits{0};     // of them, resident in the logical cache before the token
  std::atomic<int64_t> skipped{0};  // experts dropped by dynamic top-k
};

/// What the MoE block routes with when a policy is on.
struct routing_context {
  const routing_options* options = nullptr;
  expert_cache_model* cache = nullptr;  // the sequence's
  routing_counters* counters = nullptr;
};

/// Routes `num_tokens` rows of router logits at `layer`: k ids and weights per row, highest
/// ranked first; a skipped slot has id -1 and weight 0. Updates `cache` token by token. With
/// `missed`, writes per slot 1 when its expert was not resident before its token (else 0).
void route_with_policy(const model_config& config, const routing_options& options,
                       expert_cache_model& cache, int64_t layer, const float* logits,
                       int64_t num_tokens, int32_t* ids, float* weights, routing_counters& counters,
                       uint8_t* missed = nullptr);

}  // namespace xmesh::model
