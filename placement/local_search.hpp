// Local improvement of one layer's placement: repeatedly takes the host that finishes last and
// applies the best move that makes it finish earlier without any changed host finishing as late.
#pragma once

#include <cstdint>
#include <vector>

#include "placement/layer_state.hpp"

namespace xmesh::placement {

/// How local search weighs moves away from an existing placement.
struct search_options {
  /// Host-time a newly loaded replica costs: a move that loads k new replicas must cut the peak
  /// host's time by at least k times this. 0 when planning from scratch.
  double move_cost = 0.0;
  /// (host, expert) pairs held before planning, row-major by host; empty when planning from
  /// scratch. A replica that goes back where it was costs nothing.
  std::vector<uint8_t> original;
};

/// Improves `state` in place with three kinds of move, each lowering the busiest host's time:
/// relocate a replica to a free slot, swap two replicas between hosts, and re-purpose a slot for
/// another expert (which changes replica counts, so replication and packing are optimised
/// together). Every accepted move lowers the sorted vector of host times lexicographically, so the
/// search ends; it stops when the busiest host has no improving move.
/// Returns the number of moves applied; adds the candidate moves it weighed to `*work`.
int64_t local_search(layer_state& state, const search_options& options, int64_t* work = nullptr);

/// Iterated local search for planning from scratch: from the local optimum in `state`, kicks the
/// placement (random swaps and replica re-assignments from a fixed seed, so it is deterministic),
/// searches again, and keeps the best placement seen (lowest peak, then lowest sum of squared
/// host times) until `work_budget` candidate evaluations are spent.
void iterated_search(layer_state& state, int64_t work_budget, uint32_t seed);

}  // namespace xmesh::placement
