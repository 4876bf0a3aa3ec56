// One node process: the roles the cluster file gives it (coordinator, head, experts), wired to
// one CAF actor per node on the control plane and one transport listener on the data plane.
#pragma once

#include <atomic>
#include <caf/all.hpp>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "actors/cluster_config.hpp"
#include "actors/coordinator.hpp"
#include "actors/expert_host.hpp"
#include "actors/protocol.hpp"
#include "model/weights.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

/// Starts and owns a node's roles. The embedded default (`xmesh generate` without a cluster)
/// is a node_runtime with every role and the local transport: the same code path as a cluster.
class node_runtime {
 public:
  node_runtime(caf::actor_system& system, cluster_config cluster, std::string name);
  ~node_runtime();
  node_runtime(const node_runtime&) = delete;
  node_runtime& operator=(const node_runtime&) = delete;

  /// Brings the roles up; throws one clear line naming what failed (e.g. an unreachable
  /// coordinator).
  void start();
  /// The node's actor: coordinator and head requests are sent here.
  [[nodiscard]] caf::actor actor() const { return actor_; }
  [[nodiscard]] const node_config& self() const { return self_; }

  // -- role handlers (called from the node actor) ------------------------------------------
  generate_reply run_generation(const generate_request& request);
  node_stats stats() const;
  coordinator_state* coordinator() { return coordinator_.get(); }
  void set_placement(placement_table table);

 private:
  caf::actor find_coordinator();
  void start_experts();
  std::vector<std::shared_ptr<transport::channel>> channels_for(const placement_table& table);
  void forget_channel(const std::shared_ptr<transport::channel>& broken);
  std::shared_ptr<const placement_table> placement() const;

  caf::actor_system& system_;
  cluster_config cluster_;
  node_config self_;
  std::unique_ptr<model::loaded_model> model_;
  std::unique_ptr<coordinator_state> coordinator_;
  std::unique_ptr<transport::endpoint> endpoint_;
  std::unique_ptr<expert_host> host_;
  mutable std::mutex mutex_;  // guards placement_, channels_ and in_flight_
  std::shared_ptr<const placement_table> placement_;
  // By data address; shared so a request keeps its channels alive after they are forgotten.
  std::map<std::string, std::shared_ptr<transport::channel>> channels_;
  caf::actor actor_;
  caf::actor heartbeat_;
  std::vector<caf::actor> routers_;  // head role: one router actor per layer
  std::atomic<bool> ready_{false}, stopping_{false};
  int in_flight_ = 0;  // generations running; guarded by mutex_
  std::condition_variable drained_;
};

}  // namespace xmesh::actors
