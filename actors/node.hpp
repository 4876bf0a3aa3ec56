// One node process: the roles the cluster file gives it (coordinator, head, experts), wired to
// one CAF actor per node on the control plane and one transport listener on the data plane.
#pragma once

#include <atomic>
#include <caf/all.hpp>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "actors/cluster_config.hpp"
#include "actors/expert_host.hpp"
#include "actors/metrics.hpp"
#include "actors/protocol.hpp"
#include "actors/router.hpp"
#include "model/expert_store.hpp"
#include "model/generator.hpp"
#include "model/routing_policy.hpp"
#include "model/weights.hpp"
#include "transport/gate/control_gate.hpp"
#include "transport/gate/text_server.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

/// The generation a request asks for.
model::generation_options options_of(const generate_request& request);
/// Copies what a generation produced into its reply (tokens, logits, times).
void fill_generated(generate_reply& reply, model::generation_result result);

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
  /// The node's actor: coordinator, head and expert-host requests are sent here.
  [[nodiscard]] caf::actor actor() const { return actor_; }
  [[nodiscard]] const node_config& self() const { return self_; }

  // -- role handlers (called from the node actor) ------------------------------------------
  generate_reply run_generation(const generate_request& request);
  node_stats stats() const;
  /// The coordinator actor; null unless this node has the coordinator role.
  [[nodiscard]] const coordinator_actor& coordinator() const { return coordinator_; }
  /// Heads follow the expert nodes' stores: with a low-precision fallback, route through a
  /// logical cache with their settings and mark its misses, which those stores compute with the
  /// fallback; with prefetch, predict each decode step's next-layer experts (pre-gating), admit
  /// them to that cache and send them to the stores to load.
  void follow_stores();
  /// Adopts a newer table (checked against the model first); throws naming the fault.
  void set_placement(placement_table table);
  /// The coordinator this node registered with (found, or found again after losing it): only
  /// its process may push tables and order loads, retirements and stops.
  void trust_coordinator(const caf::actor& coordinator);
  /// Whether a message's sender runs in the trusted coordinator's process.
  [[nodiscard]] bool from_coordinator(const caf::strong_actor_ptr& sender) const;
  [[nodiscard]] router_service* router() { return router_.get(); }
  /// Loads and warms a replica from the node's files, or from `peer` when one is named; the
  /// weights must match `checksum`. Throws naming the fault.
  expert_loaded load_replica(int64_t layer, int64_t expert, int64_t bytes_per_s,
                             const std::string& peer, const std::string& peer_address,
                             uint64_t checksum);
  [[nodiscard]] expert_host* host() { return host_.get(); }
  [[nodiscard]] std::shared_ptr<transport::control_gate> gate() { return gate_; }
  /// What the node tells the coordinator when it registers: roles, addresses, model, the
  /// replicas it holds and the newest placement version it has seen.
  [[nodiscard]] node_info info() const;
  /// Called when the coordinator tells the node to stop (after a drain); the process owner
  /// ends it. Set before start().
  void on_stop(std::function<void()> stop) { on_stop_ = std::move(stop); }
  void request_stop() {
    stopping_ = true;  // no more registrations (a drained node leaves for good)
    if (on_stop_) on_stop_();
  }
  [[nodiscard]] bool stopping() const { return stopping_; }
  /// Counts a generation or a blocking answer as running until the token goes: tear-down waits
  /// for all of them before it frees the router, the host and the endpoint.
  [[nodiscard]] std::shared_ptr<void> busy();
  /// Refreshes the gauges sampled rather than counted (memory held); null metrics: no-op.
  void refresh_metrics();
  /// The port `/metrics` listens on; 0 when the node exports no metrics.
  [[nodiscard]] uint16_t metrics_port() const;

 private:
  caf::actor find_coordinator();
  void start_experts(const placement_table& table);

  caf::actor_system& system_;
  cluster_config cluster_;
  node_config self_;
  // The control port, and the way to peers (shared: a reconnecting thread may outlive the node).
  std::shared_ptr<transport::control_gate> gate_;
  std::unique_ptr<model::loaded_model> model_;
  std::unique_ptr<node_metrics> metrics_;  // declared before its users: destroyed after them
  std::unique_ptr<transport::text_server> metrics_server_;  // GET /metrics
  coordinator_actor coordinator_;
  std::unique_ptr<transport::endpoint> endpoint_;
  std::unique_ptr<expert_host> host_;
  std::unique_ptr<router_service> router_;  // head role
  caf::actor actor_;
  caf::actor membership_;  // heartbeats; registers again when the coordinator lost the node
  std::string model_identity_;
  model::routing_options routing_;     // heads: the cluster file's routing policy
  std::set<std::string> prefetching_;  // heads: expert nodes whose stores prefetch
  mutable std::mutex coordinator_node_mutex_;
  caf::node_id coordinator_node_;   // the process whose orders this node follows
  std::mutex peer_channels_mutex_;  // a store's peers, by data address (its slow tier)
  std::map<std::string, std::shared_ptr<transport::channel>> peer_channels_;
  std::optional<model::store_options> store_options_;  // expert nodes with `store:`
  std::atomic<uint64_t> version_{0};                   // newest placement version adopted
  std::function<void()> on_stop_;
  std::atomic<bool> ready_{false}, stopping_{false};
  std::mutex mutex_;   // guards in_flight_
  int in_flight_ = 0;  // generations and blocking answers running (busy())
  std::condition_variable drained_;
};

}  // namespace xmesh::actors
