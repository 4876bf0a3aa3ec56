// The coordinator's state: registered nodes, liveness, and the versioned placement table.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "actors/protocol.hpp"

namespace xmesh::actors {

/// Pure state (tested directly); the node actor wires it to messages.
class coordinator_state {
 public:
  /// Heartbeats come every second; a node silent this long is reported as silent.
  static constexpr std::chrono::milliseconds heartbeat_timeout{3000};

  coordinator_state(const cluster_config& cluster, placement_table table);

  /// Records a node (again, after a restart) and its first heartbeat.
  void register_node(const node_info& info);
  void heartbeat(const std::string& name);
  [[nodiscard]] cluster_status status() const;
  [[nodiscard]] const placement_table& table() const { return table_; }
  /// Nodes whose last heartbeat is older than `timeout` (they are reported, not yet re-placed).
  [[nodiscard]] std::vector<std::string> silent_nodes(std::chrono::milliseconds timeout) const;

 private:
  struct member {
    node_info info;
    std::chrono::steady_clock::time_point last_beat;
  };
  std::vector<std::string> expected_;
  placement_table table_;
  std::map<std::string, member> members_;
};

}  // namespace xmesh::actors
