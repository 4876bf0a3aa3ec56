// The versioned placement table: which nodes host a replica of each (layer, expert).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "actors/cluster_config.hpp"
#include "model/config.hpp"

namespace xmesh::actors {

/// (layer, expert) -> replica nodes, stored CSR-style so it travels as one CAF message.
struct placement_table {
  uint64_t version = 0;
  int64_t num_layers = 0;
  int64_t num_experts = 0;
  std::vector<std::string> nodes;      // node names; a replica names a node by index
  std::vector<std::string> addresses;  // data-plane address of each node
  std::vector<int32_t> replica_begin;  // size num_layers * num_experts + 1
  std::vector<int32_t> replica_node;

  /// Node indices hosting (layer, expert).
  [[nodiscard]] std::span<const int32_t> replicas(int64_t layer, int64_t expert) const;
  /// True when `node` hosts (layer, expert).
  [[nodiscard]] bool hosts(int32_t node, int64_t layer, int64_t expert) const;
};

/// The table one version on, with `node` added to (or removed from) the replicas of
/// (layer, expert); throws when that replica is already there (or not there).
placement_table with_replica(const placement_table& table, int64_t layer, int64_t expert,
                             int32_t node, bool add);

/// The table one version on in which `node` hosts exactly `slots` (layer * num_experts +
/// expert): what a (re)registering node reports, or nothing for a dead node (experts it held
/// alone are left without a replica: orphans, which heads compute from their own model files).
placement_table with_column(const placement_table& table, int32_t node,
                            const std::vector<int64_t>& slots);

/// The table one version on with node `name` (data-plane `address`) added, hosting nothing: a
/// node joining that the cluster file did not list.
placement_table with_node(const placement_table& table, const std::string& name,
                          const std::string& address);

/// `table` with no replica anywhere, same nodes and version: what a coordinator starts from
/// before any node has reported what it holds.
placement_table without_replicas(const placement_table& table);

/// Experts with no replica, as layer * num_experts + expert.
std::vector<int64_t> orphaned_experts(const placement_table& table);

/// Index of `name` in the table's node list, or -1.
int32_t node_index(const placement_table& table, const std::string& name);

/// Builds the table for `cluster`'s placement policy: `static` (experts named per node, the
/// same for every layer) or `spread` (experts dealt to expert nodes in proportion to their
/// memory budgets). Throws when an expert has no replica or a budget cannot hold its share.
placement_table make_placement(const cluster_config& cluster, const model::model_config& model,
                               int64_t expert_bytes, uint64_t version);

/// Checks a table (e.g. one received from the network) against the model before it is used:
/// shapes, CSR bounds and node indices (an expert may have no replica after a node died);
/// throws naming the fault.
void check_placement(const placement_table& table, const model::model_config& model);

/// Every (layer, expert) `node_name` hosts, as layer * num_experts + expert.
std::vector<int64_t> hosted_experts(const placement_table& table, const std::string& node_name);

}  // namespace xmesh::actors
