// The mutable placement of one layer while the planner works on it: which experts each host holds,
// replica counts, and per-host times kept up to date under every edit.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "placement/placement.hpp"

namespace xmesh::placement {

/// The fixed facts of one layer's problem. Spans point into data the caller keeps alive.
struct layer_problem {
  std::span<const double> load;           // tokens per expert
  std::span<const host_spec> hosts;       // slots already capped at the number of experts
  std::span<const int32_t> node_of_host;  // empty unless hierarchical
  std::vector<int32_t> node_of_expert;    // empty unless hierarchical: the node owning its group
  int32_t num_replicas = 0;               // R

  [[nodiscard]] int32_t num_experts() const { return static_cast<int32_t>(load.size()); }
  [[nodiscard]] int32_t num_hosts() const { return static_cast<int32_t>(hosts.size()); }
  /// Whether host h may hold expert e (hierarchical mode keeps a group's experts in its node).
  [[nodiscard]] bool allowed(int32_t h, int32_t e) const {
    return node_of_expert.empty() ||
           node_of_host[static_cast<size_t>(h)] == node_of_expert[static_cast<size_t>(e)];
  }
  /// Most replicas expert e can have: one per allowed host with a slot (anti-affinity).
  [[nodiscard]] int32_t max_replicas(int32_t e) const;
};

/// One layer's placement under construction; every edit keeps counts and host times exact.
class layer_state {
 public:
  explicit layer_state(const layer_problem& problem);
  /// Loads an existing placement (assumed valid for the problem's hosts and experts).
  layer_state(const layer_problem& problem, const layer_placement& layer);

  [[nodiscard]] const layer_problem& problem() const { return *problem_; }
  [[nodiscard]] bool holds(int32_t h, int32_t e) const { return pos_[index(h, e)] >= 0; }
  [[nodiscard]] int32_t count(int32_t e) const { return count_[static_cast<size_t>(e)]; }
  [[nodiscard]] double time(int32_t h) const { return time_[static_cast<size_t>(h)]; }
  [[nodiscard]] const std::vector<double>& times() const { return time_; }
  [[nodiscard]] int32_t free_slots(int32_t h) const;
  [[nodiscard]] const std::vector<int32_t>& experts_on(int32_t h) const {
    return experts_on_[static_cast<size_t>(h)];
  }
  [[nodiscard]] const std::vector<int32_t>& hosts_of(int32_t e) const {
    return hosts_of_[static_cast<size_t>(e)];
  }
  /// Load of one replica of e: the expert's load split evenly over its replicas.
  [[nodiscard]] double replica_load(int32_t e) const;

  /// Adds a replica of e on h (a new replica: every replica of e gets lighter).
  void add(int32_t h, int32_t e);
  /// Moves e's replica from host `from` to host `to`; counts do not change.
  void relocate(int32_t e, int32_t from, int32_t to);
  /// Re-purposes h's slot holding a (which keeps another replica) for a new replica of b.
  void retarget(int32_t h, int32_t a, int32_t b);
  /// Recomputes host times from scratch, dropping floating-point drift.
  void refresh_times();

  /// The placement, slots ordered by host then expert.
  [[nodiscard]] layer_placement to_layer() const;

 private:
  [[nodiscard]] size_t index(int32_t h, int32_t e) const {
    return static_cast<size_t>(h) * static_cast<size_t>(problem_->num_experts()) +
           static_cast<size_t>(e);
  }
  void attach(int32_t h, int32_t e);
  void detach(int32_t h, int32_t e);
  void shift_replicas(int32_t e, int32_t old_count, int32_t new_count);

  const layer_problem* problem_;
  std::vector<std::vector<int32_t>> experts_on_;
  std::vector<std::vector<int32_t>> hosts_of_;
  std::vector<int32_t> pos_;  // index of e in experts_on_[h], or -1
  std::vector<int32_t> count_;
  std::vector<double> time_;
};

}  // namespace xmesh::placement
