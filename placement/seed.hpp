// The planner's starting point for one layer: replica counts, then a packing of the replicas onto
// hosts. Local search (local_search.hpp) improves on it.
#pragma once

#include <cstdint>
#include <vector>

#include "placement/layer_state.hpp"

namespace xmesh::placement {

/// Replica counts summing to R: one per expert, then each extra replica to the expert with the
/// largest load per replica (EPLB's rule, which minimises the largest replica load), skipping an
/// expert when one more replica could not be placed on distinct hosts (Gale-Ryser condition per
/// node), so that every count vector it returns has a valid packing.
[[nodiscard]] std::vector<int32_t> greedy_counts(const layer_problem& problem);

/// Longest-processing-time packing with speeds: replicas by load, heaviest first, each to the
/// allowed host with a free slot, not yet holding the expert, that would finish earliest.
/// Returns false when it paints itself into a corner (the caller then uses constructive_pack).
[[nodiscard]] bool lpt_pack(const std::vector<int32_t>& counts, layer_state& state);

/// A packing that always succeeds when the counts pass the Gale-Ryser test: experts with the
/// most replicas first, each onto the allowed hosts with the most free slots.
void constructive_pack(const std::vector<int32_t>& counts, layer_state& state);

/// Hierarchical mode: assigns G/M groups of consecutive experts to each of M nodes, balancing
/// group load over node speed (LPT with a cardinality limit, then pairwise group swaps).
/// Returns the node of every expert.
[[nodiscard]] std::vector<int32_t> assign_groups(const std::vector<double>& load,
                                                 int32_t num_groups,
                                                 const std::vector<double>& node_speed);

}  // namespace xmesh::placement
