#include "actors/coordinator.hpp"

#include <algorithm>
#include <limits>

namespace xmesh::actors {

coordinator_state::coordinator_state(const cluster_config& cluster, placement_table table,
                                     int64_t expert_bytes)
    : timeout_(static_cast<int64_t>(cluster.heartbeat.timeout_s * 1000)),
      table_(std::move(table)),
      expert_bytes_(expert_bytes) {
  for (const auto& n : cluster.nodes) {
    expected_.push_back(n.name);
    if (!n.has(role::experts)) continue;
    capacity_[n.name] = n.memory_budget_bytes > 0 && expert_bytes > 0
                            ? n.memory_budget_bytes / expert_bytes
                            : std::numeric_limits<int64_t>::max();
    auto hosted = hosted_experts(table_, n.name);
    resident_[n.name] = {hosted.begin(), hosted.end()};
  }
}

void coordinator_state::register_node(const node_info& info) {
  members_[info.name] = {info, std::chrono::steady_clock::now()};
  if (dead_.erase(info.name) != 0) {
    // Back as a new member: it serves what the live table gives it (nothing, until orders).
    auto hosted = hosted_experts(table_, info.name);
    resident_[info.name] = {hosted.begin(), hosted.end()};
  }
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
  s.silent = silent_nodes(timeout_);
  return s;
}

std::vector<std::string> coordinator_state::silent_nodes(std::chrono::milliseconds timeout) const {
  std::vector<std::string> out;
  auto now = std::chrono::steady_clock::now();
  for (const auto& [name, m] : members_)
    if (now - m.last_beat > timeout) out.push_back(name);
  return out;
}

std::vector<std::string> coordinator_state::newly_dead() const {
  std::vector<std::string> out;
  for (const auto& name : silent_nodes(timeout_))
    if (capacity_.count(name) && !dead_.count(name)) out.push_back(name);
  return out;
}

std::vector<int64_t> coordinator_state::declare_dead(const std::string& name) {
  dead_.insert(name);
  resident_[name].clear();
  if (int32_t n = node_index(table_, name); n >= 0) table_ = without_node(table_, n);
  return orphaned_experts(table_);
}

std::string coordinator_state::roomiest_node_for(int64_t layer, int64_t expert) const {
  std::string best;
  int64_t best_free = 0;
  for (const auto& [name, room] : capacity_) {
    int32_t n = node_index(table_, name);
    if (n < 0 || dead_.count(name) || !members_.count(name) || table_.hosts(n, layer, expert))
      continue;
    int64_t free = room - resident(name);
    if (free > best_free) best = name, best_free = free;
  }
  return best;
}

std::map<std::string, caf::actor> coordinator_state::members_with(const std::string& role) const {
  std::map<std::string, caf::actor> out;
  for (const auto& [name, m] : members_)
    if (!dead_.count(name) &&
        std::find(m.info.roles.begin(), m.info.roles.end(), role) != m.info.roles.end() &&
        m.info.node)
      out[name] = m.info.node;
  return out;
}

caf::actor coordinator_state::actor_of(const std::string& name) const {
  auto it = members_.find(name);
  return it == members_.end() || dead_.count(name) ? caf::actor{} : it->second.info.node;
}

std::string coordinator_state::check(const move_order& o) const {
  const std::string what =
      "expert " + std::to_string(o.expert) + " of layer " + std::to_string(o.layer);
  if (o.layer < 0 || o.layer >= table_.num_layers)
    return "layer " + std::to_string(o.layer) + " is out of range (the model has " +
           std::to_string(table_.num_layers) + ")";
  if (o.expert < 0 || o.expert >= table_.num_experts)
    return "expert " + std::to_string(o.expert) + " is out of range (the model has " +
           std::to_string(table_.num_experts) + ")";
  const bool adds = o.kind != move_order::retire, removes = o.kind != move_order::replicate;
  int32_t to = node_index(table_, o.to), from = node_index(table_, o.from);
  if (adds && to < 0) return "'" + o.to + "' is not an expert node of this cluster";
  if (removes && from < 0) return "'" + o.from + "' is not an expert node of this cluster";
  if (adds && removes && to == from) return "source and destination are the same node";
  if (adds && table_.hosts(to, o.layer, o.expert)) return "'" + o.to + "' already hosts " + what;
  if (removes && !table_.hosts(from, o.layer, o.expert))
    return "'" + o.from + "' does not host " + what;
  if (o.kind == move_order::retire && table_.replicas(o.layer, o.expert).size() < 2)
    return "it would leave " + what + " without a replica";
  if (adds && !members_.count(o.to)) return "'" + o.to + "' has not registered";
  if (adds && dead_.count(o.to)) return "'" + o.to + "' is dead";
  if (adds && resident(o.to) + 1 > capacity(o.to))
    return "'" + o.to + "' memory budget holds " + std::to_string(capacity(o.to)) + " experts of " +
           std::to_string(expert_bytes_) + " bytes and " + std::to_string(resident(o.to)) +
           " are resident";
  return {};
}

void coordinator_state::reserve(const move_order& o) {
  resident_[o.to].insert(o.layer * table_.num_experts + o.expert);
}

void coordinator_state::unreserve(const move_order& o) {
  resident_[o.to].erase(o.layer * table_.num_experts + o.expert);
}

const placement_table& coordinator_state::add_replica(const move_order& o) {
  table_ = with_replica(table_, o.layer, o.expert, node_index(table_, o.to), true);
  bytes_moved_ += expert_bytes_;
  ++replications_;
  return table_;
}

const placement_table& coordinator_state::remove_replica(const move_order& o) {
  // A node declared dead meanwhile has lost all its replicas already.
  if (int32_t from = node_index(table_, o.from); table_.hosts(from, o.layer, o.expert))
    table_ = with_replica(table_, o.layer, o.expert, from, false);
  return table_;
}

void coordinator_state::release(const move_order& o) {
  resident_[o.from].erase(o.layer * table_.num_experts + o.expert);
  ++retirements_;
}

int64_t coordinator_state::resident(const std::string& name) const {
  auto it = resident_.find(name);
  return it == resident_.end() ? 0 : static_cast<int64_t>(it->second.size());
}

int64_t coordinator_state::capacity(const std::string& name) const {
  auto it = capacity_.find(name);
  return it == capacity_.end() ? 0 : it->second;
}

placement_report coordinator_state::report() const {
  return {table_,       bytes_moved_,  replications_, retirements_, failed_moves_,
          rebalancing_, balancedness_, tokens_,       rebalances_,  automatic_};
}

}  // namespace xmesh::actors
