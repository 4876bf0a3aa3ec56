#include "actors/coordinator.hpp"

#include <algorithm>

namespace xmesh::actors {

coordinator_state::coordinator_state(const cluster_config& cluster, placement_table table)
    : table_(std::move(table)) {
  for (const auto& n : cluster.nodes) expected_.push_back(n.name);
}

void coordinator_state::register_node(const node_info& info) {
  members_[info.name] = {info, std::chrono::steady_clock::now()};
}

void coordinator_state::heartbeat(const std::string& name) {
  auto it = members_.find(name);
  if (it != members_.end()) it->second.last_beat = std::chrono::steady_clock::now();
}

cluster_status coordinator_state::status() const {
  cluster_status s;
  s.placement_version = table_.version;
  for (const auto& name : expected_)
    (members_.count(name) ? s.registered : s.missing).push_back(name);
  s.silent = silent_nodes(heartbeat_timeout);
  return s;
}

std::vector<std::string> coordinator_state::silent_nodes(std::chrono::milliseconds timeout) const {
  std::vector<std::string> out;
  auto now = std::chrono::steady_clock::now();
  for (const auto& [name, m] : members_)
    if (now - m.last_beat > timeout) out.push_back(name);
  return out;
}

}  // namespace xmesh::actors
