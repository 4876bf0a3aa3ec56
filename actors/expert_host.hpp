// The experts role: serves dispatch frames with one CAF actor per hosted (layer, expert) replica.
#pragma once

#include <atomic>
#include <caf/all.hpp>
#include <memory>
#include <string>
#include <vector>

#include "actors/placement_table.hpp"
#include "model/weights.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

struct expert_queue;

/// Validates every frame from the network before use, splits its rows by expert, lets each
/// expert actor run whatever has queued up for it as one batch (dynamic batching: no capacity,
/// no dropped token), and answers with one result frame carrying the rows in request order.
class expert_host {
 public:
  expert_host(caf::actor_system& system, const model::loaded_model& model,
              const placement_table& table, const std::string& node_name);
  ~expert_host();
  expert_host(const expert_host&) = delete;
  expert_host& operator=(const expert_host&) = delete;

  /// Rows one frame may carry (a decode step carries tokens x k; a prefill chunk more).
  static constexpr uint32_t max_rows_per_frame = 1u << 16;

  /// Transport handler (runs on the receive thread; never throws, never crashes on bad input).
  void on_message(transport::bytes message, std::shared_ptr<transport::reply_handle> reply);
  /// Stops the expert actors and waits until none is computing (before the weights go away).
  void stop();

  [[nodiscard]] uint64_t frames_served() const { return served_.load(); }
  [[nodiscard]] uint64_t frames_dropped() const { return dropped_.load(); }

 private:
  void serve(transport::bytes message, const std::shared_ptr<transport::reply_handle>& reply);
  void reject(const std::string& reason, const std::shared_ptr<transport::reply_handle>& reply);

  caf::actor_system& system_;
  const model::loaded_model& model_;
  std::string node_name_;
  std::vector<std::shared_ptr<expert_queue>>
      queues_;                      // by layer * num_experts + expert; null if not hosted
  std::vector<caf::actor> actors_;  // same index as queues_
  std::atomic<uint64_t> served_{0}, dropped_{0};
};

}  // namespace xmesh::actors
