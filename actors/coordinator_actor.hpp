// The coordinator actor: coordinator_state wired to messages, and the multi-step orders that
// change the placement while requests flow (make-before-break).
#pragma once

#include <caf/all.hpp>
#include <functional>

#include "actors/cluster_config.hpp"
#include "actors/metrics.hpp"
#include "actors/protocol.hpp"

namespace xmesh::actors {

/// What the coordinator needs to know about the model.
struct coordinator_model {
  int64_t expert_bytes = 0;
  std::vector<int64_t> moe_layers;
  /// XXH3 of (layer, expert)'s weights in the coordinator's copy of the model: every replica
  /// loaded at run time must match it.
  std::function<uint64_t(int64_t, int64_t)> checksum;
  std::string identity;             // model::model_identity: nodes with another model are refused
  node_metrics* metrics = nullptr;  // the coordinator's node's metrics, when on
};

/// Spawns the coordinator with the cluster file's planned table (what starting expert nodes
/// load; the live table is built from what registered nodes report); it runs the automatic
/// rebalance loop when the cluster file sets a period.
coordinator_actor spawn_coordinator(caf::actor_system& system, const cluster_config& cluster,
                                    placement_table table, coordinator_model model);

/// The text of an error a coordinator (or any node) answered with, without CAF's decoration.
std::string error_text(caf::actor_system& system, const caf::error& e);

}  // namespace xmesh::actors
