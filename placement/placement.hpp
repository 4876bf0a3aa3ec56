// Placement vocabulary: hosts, per-layer placements, loads, and the measures every plan is judged
// by.
#pragma once

#include <cstdint>
#include <vector>

namespace xmesh::placement {

/// Per-(layer, expert) load, in tokens routed to the expert: `load[layer][expert]`.
using load_matrix = std::vector<std::vector<double>>;

/// One host as the planner sees it: how many expert replicas it holds per layer, and how fast it
/// is.
struct host_spec {
  int32_t slots = 0;   // expert slots per layer (a memory budget divided by the expert's size)
  double speed = 1.0;  // relative compute speed: a host's time is its load divided by this
};

/// Where every physical slot of one layer lives (`host_of_slot`) and which expert it holds.
struct layer_placement {
  std::vector<int32_t> expert_of_slot;
  std::vector<int32_t> host_of_slot;
};

/// A placement of every layer; each layer has the same number of slots R.
struct placement {
  std::vector<layer_placement> layers;
};

// -- measures -------------------------------------------------------------------------------------

/// Replicas per expert in one layer.
[[nodiscard]] std::vector<int32_t> replica_counts(const layer_placement& layer,
                                                  int32_t num_experts);

/// Per-host time of one layer: sum over the host's slots of load(e) / replicas(e), over its speed.
[[nodiscard]] std::vector<double> host_times(const layer_placement& layer,
                                             const std::vector<double>& load,
                                             const std::vector<host_spec>& hosts);

/// Mean over max of the given host times; 1 when every host is idle.
[[nodiscard]] double balancedness(const std::vector<double>& times);

/// Largest host time of one layer (the layer's step time).
[[nodiscard]] double max_time(const std::vector<double>& times);

/// Replicas that must be loaded to go from `before` to `after`: (host, expert) pairs that are new.
[[nodiscard]] int64_t moved_replicas(const layer_placement& before, const layer_placement& after,
                                     int32_t num_experts, int32_t num_hosts);

// -- building blocks ------------------------------------------------------------------------------

/// Slots per host for R replicas when no limits are given: R split evenly, the remainder going to
/// the lowest-numbered hosts.
[[nodiscard]] std::vector<int32_t> even_slots(int32_t num_replicas, int32_t num_hosts);

/// The static layout EPLB replaces, used as "before" when there is no current placement: hosts
/// take consecutive slot blocks (sizes as even as the slot limits allow, in host order) and slot s
/// holds expert s mod E. A host's block never exceeds E slots, so no host holds an expert twice.
[[nodiscard]] layer_placement naive_placement(int32_t num_experts, int32_t num_replicas,
                                              const std::vector<host_spec>& hosts);

}  // namespace xmesh::placement
