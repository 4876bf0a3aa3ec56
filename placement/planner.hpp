// The placement planner: load-aware expert replication and placement over heterogeneous hosts.
// Pure computation: no I/O (placement_json.hpp reads and writes the files).
#pragma once

#include <cstdint>
#include <vector>

#include "placement/placement.hpp"

namespace xmesh::placement {

/// What the planner is asked to do, beyond the load itself.
struct plan_options {
  int32_t num_replicas = 0;      // R: expert slots per layer over all hosts (R >= experts)
  std::vector<host_spec> hosts;  // one per host
  int32_t num_groups = 0;        // hierarchical mode when > 0: experts form this many groups...
  int32_t num_nodes = 0;         // ...kept within one of this many nodes of consecutive hosts
  double expert_bytes = 1.0;     // bytes of one expert's weights, for the moved-bytes report
  /// With a current placement: each newly loaded replica must cut the layer's peak host time by
  /// this fraction of the layer's ideal time (total load over total speed) to be worth moving.
  double move_cost = 0.01;
  /// Candidate moves weighed per layer by the iterated local search (deterministic effort; the
  /// default plans 61 layers x 256 experts x 64 hosts in well under a second on one core).
  int64_t search_effort = 200000;
};

/// Before/after measures of one layer.
struct layer_report {
  double balancedness_before = 1.0;  // mean over max of per-host time
  double balancedness_after = 1.0;
  double max_time_before = 0.0;  // the layer's step time: its busiest host's time
  double max_time_after = 0.0;
  int64_t moved_replicas = 0;  // replicas loaded on a host that did not hold them
};

/// Measures of a whole plan. Overall balancedness is (sum over layers of mean host time) over
/// (sum over layers of max host time): layers run one after another, so this is ideal time over
/// actual time for one pass through the model.
struct plan_report {
  std::vector<layer_report> layers;
  double balancedness_before = 1.0;
  double balancedness_after = 1.0;
  int64_t moved_replicas = 0;
  double bytes_moved = 0.0;
  bool had_current = false;  // "before" is the current placement, else the naive layout
};

/// A placement and how it compares with what was there before.
struct plan_result {
  struct placement placement;
  plan_report report;
};

/// Checks the inputs and throws std::invalid_argument with one clear line naming what is wrong.
void validate_inputs(const load_matrix& load, const plan_options& options,
                     const placement* current);

/// Plans every layer. Without `current`, "before" is naive_placement(). With it, the plan starts
/// from the current placement and only moves replicas that pay for themselves; identical load
/// with a placement this planner produced yields no moves. Throws std::invalid_argument on bad
/// input (see validate_inputs). Deterministic: the same input gives the same output.
[[nodiscard]] plan_result plan(const load_matrix& load, const plan_options& options,
                               const placement* current = nullptr);

/// Measures `layers` against `before` (the naive layout when null) with the same definitions as
/// plan() uses; tools and benchmarks use it to score placements made elsewhere.
[[nodiscard]] plan_report evaluate(const load_matrix& load, const plan_options& options,
                                   const placement& after, const placement* before = nullptr);

}  // namespace xmesh::placement
