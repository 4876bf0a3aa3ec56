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
  /// `planned`: the cluster file's placement, which starting expert nodes load; the live table
  /// holds only what registered nodes report they hold. `expert_bytes`: one routed expert's
  /// weights, for memory budgets; `model`: model::model_identity of the cluster's model.
  coordinator_state(const cluster_config& cluster, const placement_table& planned,
                    int64_t expert_bytes, std::string model = {});

  // -- membership ------------------------------------------------------------------------------
  /// Why `info` may not register (its model differs from the cluster's, naming both; a joining
  /// node without the experts role), or empty.
  [[nodiscard]] std::string admit(const node_info& info) const;
  /// Records a node (new, joining, restarted, or back after it was declared dead) and its first
  /// heartbeat. An expert node's replicas in the live table become exactly what it reports,
  /// except that a node back from the dead waits `rejoin` of steady beats first (rejoining).
  /// Returns true when the live table changed.
  bool register_node(const node_info& info);
  /// A beat; false when `name` is not a live member (never registered, restarted coordinator,
  /// declared dead): the node registers again.
  bool heartbeat(const std::string& name);
  [[nodiscard]] cluster_status status() const;
  /// Seconds since each live member's last heartbeat.
  [[nodiscard]] std::map<std::string, double> heartbeat_ages() const;
  /// Nodes whose last heartbeat is older than `timeout`.
  [[nodiscard]] std::vector<std::string> silent_nodes(std::chrono::milliseconds timeout) const;
  /// Members silent for longer than the heartbeat timeout and not yet declared dead.
  [[nodiscard]] std::vector<std::string> newly_dead() const;
  /// Declares a node dead: the next version has none of its replicas (experts it held alone
  /// become orphans), its memory is released, and it is left out of pushes and orders until it
  /// registers again. Returns the orphaned experts (layer * experts + expert).
  std::vector<int64_t> declare_dead(const std::string& name);
  [[nodiscard]] bool is_dead(const std::string& name) const { return dead_.count(name) != 0; }
  /// Rejoining nodes whose wait is over now serve what they hold; returns their names (the live
  /// table changed when any).
  std::vector<std::string> finish_rejoins();
  /// True once every expert node of the cluster file has registered, or a grace period after
  /// the coordinator started has passed: orphans are re-placed only then, so a (re)started
  /// coordinator does not copy experts that a node about to register holds.
  [[nodiscard]] bool settled() const;
  /// The live expert node with the most free memory that lacks (layer, expert) and may take new
  /// replicas (not rejoining, not draining); empty if none.
  [[nodiscard]] std::string roomiest_node_for(int64_t layer, int64_t expert) const;
  /// Whether new replicas may go to `name` (a live, settled expert node that is not draining).
  [[nodiscard]] bool placeable(const std::string& name) const;
  /// Registered nodes with `role`'s name ("head", "experts"), name -> actor (dead ones left out).
  [[nodiscard]] std::map<std::string, caf::actor> members_with(const std::string& role) const;
  /// The actor of a registered node; null when it has not registered.
  [[nodiscard]] caf::actor actor_of(const std::string& name) const;
  /// The table a starting expert node loads from: the live one, with `name` hosting what the
  /// cluster file planned for it or what it held when it was last seen alive.
  /// Also notes that `name` is loading it (see settled()).
  [[nodiscard]] placement_table assignment(const std::string& name);
  /// Called at each liveness check, before newly_dead(): a check that comes late (the
  /// coordinator stalled) gives every member a fresh start rather than a death.
  void checked_liveness();

  // -- draining --------------------------------------------------------------------------------
  /// The orders that empty `name` (retire where another replica exists, else migrate to the
  /// roomiest placeable node) and marks it draining; throws naming the first expert that has
  /// nowhere to go, or why the node cannot be drained, with nothing changed.
  std::vector<move_order> plan_drain(const std::string& name);
  /// The drain ended: `stopped` says whether the node was emptied and told to stop (it leaves
  /// the membership) or the drain failed (it takes new replicas again).
  void end_drain(const std::string& name, bool stopped);

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
  [[nodiscard]] double balancedness() const { return balancedness_; }
  void set_measured_load(std::vector<double> tokens) { tokens_ = std::move(tokens); }
  /// A rebalance carried out orders (`automatic`: the loop started it).
  void count_rebalance(bool automatic) {
    ++rebalances_;
    automatic_ += automatic;
  }
  void set_rebalancing(bool busy) { rebalancing_ = busy; }

 private:
  using clock = std::chrono::steady_clock;
  struct member {
    node_info info;
    clock::time_point last_beat;
  };
  [[nodiscard]] clock::duration rejoin_wait(const std::string& name) const;

  std::chrono::milliseconds timeout_;
  double rejoin_s_;
  std::string model_;
  std::string scheme_;  // every data address starts with it: the cluster's transport
  clock::time_point started_ = clock::now();
  std::set<std::string> dead_, draining_, drained_;
  std::map<std::string, clock::time_point> rejoining_;          // since it registered again
  std::map<std::string, std::vector<clock::time_point>> died_;  // when each node was declared dead
  std::map<std::string, std::vector<int64_t>> assignment_;      // what a starting node loads
  std::map<std::string, clock::time_point> coming_;             // fetched its assignment then
  std::map<std::string, std::pair<std::vector<std::string>, std::string>>
      listed_;  // roles, address
  clock::time_point last_check_ = clock::now();
  int64_t deaths_ = 0, rejoins_ = 0;
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
