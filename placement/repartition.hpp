// The heavier local-search move: pool the replicas of two hosts and split them again optimally.
// It escapes local optima that single relocations and swaps cannot (two-for-one exchanges, for
// example), at a cost exponential in the number of pooled replicas, so it is bounded.
#pragma once

#include <cstdint>
#include <vector>

#include "placement/layer_state.hpp"

namespace xmesh::placement {

/// A new split of two hosts' replicas: `to_g` leave h for g, `to_h` leave g for h.
struct repartition {
  std::vector<int32_t> to_g, to_h;
  double local = 0.0;        // the larger of the two hosts' new times
  int32_t new_replicas = 0;  // replicas loaded where they were not originally
};

/// Replicas of one host pair put in play at most (2^this subsets), half from each host.
inline constexpr int32_t max_pooled_replicas = 12;

/// The split of h's and g's replicas (counts unchanged; an expert on both stays on both; each
/// host puts its lightest replicas in play, up to half of max_pooled_replicas) that minimises
/// max(time h, time g) plus move_cost per newly loaded replica (`original` as in
/// search_options). Returns false when no other split is allowed.
bool best_repartition(const layer_state& state, int32_t h, int32_t g,
                      const std::vector<uint8_t>& original, double move_cost, repartition& out);

}  // namespace xmesh::placement
