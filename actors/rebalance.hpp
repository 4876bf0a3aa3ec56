// Load-aware rebalancing: the planner (placement/) run against the live table, its result turned
// into replicate / retire / migrate orders the coordinator carries out make-before-break.
#pragma once

#include <cstdint>
#include <vector>

#include "actors/placement_table.hpp"
#include "actors/protocol.hpp"
#include "placement/placement.hpp"

namespace xmesh::actors {

/// What the coordinator measured and allows.
struct rebalance_inputs {
  std::vector<double> tokens;       // routed tokens per layer * experts + expert (all heads)
  std::vector<double> speed;        // relative compute speed per table node (1 = mean)
  std::vector<int64_t> capacity;    // experts each table node's memory holds (all layers)
  std::vector<int64_t> moe_layers;  // layers that have routed experts
  int64_t replicas_per_layer = 0;   // slots per layer to aim for; 0: experts + nodes
  double hysteresis = 0.01;         // the planner's move cost
};

/// The orders and the balancedness (ideal over actual time, over all MoE layers) of the
/// measured load before and after them.
struct rebalance_plan {
  std::vector<move_order> orders;  // retirements first, then migrations, then replications
  double balancedness_before = 1;
  double balancedness_after = 1;
};

/// Seconds one routed row costs on a node as its heads see it: the node's compute per row plus
/// its share of each frame's network and hand-off time (round trip minus the node's service
/// time, spread over the rows of a frame). 0 when the node has computed nothing yet.
[[nodiscard]] double seconds_per_row(const host_speed& host, double round_trip_s);

/// Speeds relative to the mean of the nodes that measured one (1 for the others): the planner's
/// host speeds, from seconds per row.
[[nodiscard]] std::vector<double> relative_speeds(const std::vector<double>& seconds_per_row);

/// The table's replicas of one layer in the planner's vocabulary (slots of expert and host).
[[nodiscard]] placement::layer_placement to_layer_placement(const placement_table& table,
                                                            int64_t layer);

/// Plans every MoE layer with placement::plan from the live placement; deterministic.
[[nodiscard]] rebalance_plan plan_rebalance(const placement_table& table,
                                            const rebalance_inputs& inputs);

/// Balancedness of `tokens` under `table` with `speed` per node (1 when there is no load).
[[nodiscard]] double measure_balancedness(const placement_table& table,
                                          const rebalance_inputs& inputs);

}  // namespace xmesh::actors
