// The coordinator's state: registered nodes, liveness, the versioned placement table, and the
// memory each expert node holds while replicas are loaded, served and drained.
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/protocol.hpp"

namespace xmesh::actors {

/// Pure state (tested directly); coordinator_actor (coordinator_actor.cpp) wires it to messages
/// and carries out the multi-step orders.
class coordinator_state {
 public:
  /// `expert_bytes`: one routed expert's weights, for memory budgets.
  coordinator_state(const cluster_config& cluster, placement_table table, int64_t expert_bytes);

  // -- membership ------------------------------------------------------------------------------
  /// Records a node (again, after a restart) and its first heartbeat.
  void register_node(const node_info& info);
  void heartbeat(const std::string& name);
  [[nodiscard]] cluster_status status() const;
  /// Nodes whose last heartbeat is older than `timeout`.
  [[nodiscard]] std::vector<std::string> silent_nodes(std::chrono::milliseconds timeout) const;
  /// Expert nodes silent for longer than the heartbeat timeout and not yet declared dead.
  [[nodiscard]] std::vector<std::string> newly_dead() const;
  /// Declares an expert node dead: the next version has none of its replicas (experts it held
  /// alone become orphans), its memory is released, and it is left out of pushes and orders
  /// until it registers again. Returns the orphaned experts (layer * experts + expert).
  std::vector<int64_t> declare_dead(const std::string& name);
  [[nodiscard]] bool is_dead(const std::string& name) const { return dead_.count(name) != 0; }
  /// The live expert node with the most free memory that lacks (layer, expert); empty if none.
  [[nodiscard]] std::string roomiest_node_for(int64_t layer, int64_t expert) const;
  /// Registered nodes with `role`'s name ("head", "experts"), name -> actor (dead ones left out).
  [[nodiscard]] std::map<std::string, caf::actor> members_with(const std::string& role) const;
  /// The actor of a registered node; null when it has not registered.
  [[nodiscard]] caf::actor actor_of(const std::string& name) const;

  // -- placement -------------------------------------------------------------------------------
  [[nodiscard]] const placement_table& table() const { return table_; }
  /// Why `order` cannot go ahead now (unknown node or expert, a replica already there or
  /// missing, the last replica, a memory budget), or empty when it can.
  [[nodiscard]] std::string check(const move_order& order) const;
  /// Step 1 of replicate/migrate: memory on `to` is taken from now on (load, then serve).
  void reserve(const move_order& order);
  /// The load failed: give the memory back.
  void unreserve(const move_order& order);
  /// Step 2: publish the next version with the new replica; the bytes count as moved.
  const placement_table& add_replica(const move_order& order);
  /// Step 3 of retire/migrate: publish the next version without the replica on `from`, which
  /// keeps its memory until it has drained.
  const placement_table& remove_replica(const move_order& order);
  /// Step 4: `from` has drained and freed the replica.
  void release(const move_order& order);
  /// An accepted order failed part way.
  void count_failure() { ++failed_moves_; }

  /// Experts `name`'s memory holds now (served, loading or draining) and could hold.
  [[nodiscard]] int64_t resident(const std::string& name) const;
  [[nodiscard]] int64_t capacity(const std::string& name) const;
  [[nodiscard]] int64_t expert_bytes() const { return expert_bytes_; }

  /// The live table with counters; `balancedness` as last measured.
  [[nodiscard]] placement_report report() const;
  void set_balancedness(double b) { balancedness_ = b; }
  void set_measured_load(std::vector<double> tokens) { tokens_ = std::move(tokens); }
  /// A rebalance carried out orders (`automatic`: the loop started it).
  void count_rebalance(bool automatic) {
    ++rebalances_;
    automatic_ += automatic;
  }
  void set_rebalancing(bool busy) { rebalancing_ = busy; }

 private:
  struct member {
    node_info info;
    std::chrono::steady_clock::time_point last_beat;
  };
  std::chrono::milliseconds timeout_;
  std::set<std::string> dead_;
  std::vector<std::string> expected_;
  std::map<std::string, int64_t> capacity_;  // experts each expert node's budget holds, by node
  placement_table table_;
  int64_t expert_bytes_;
  std::map<std::string, member> members_;
  std::map<std::string, std::set<int64_t>> resident_;  // node -> layer * experts + expert
  int64_t bytes_moved_ = 0, replications_ = 0, retirements_ = 0, failed_moves_ = 0;
  double balancedness_ = 1;
  std::vector<double> tokens_;
  int64_t rebalances_ = 0, automatic_ = 0;
  bool rebalancing_ = false;
};

}  // namespace xmesh::actors
