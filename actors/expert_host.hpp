// The experts role: serves dispatch frames with one CAF actor per hosted (layer, expert) replica,
// and adds and retires replicas while frames keep coming.
#pragma once

#include <algorithm>
#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "actors/metrics.hpp"
#include "actors/node_store.hpp"
#include "actors/protocol.hpp"
#include "kernels/core/thread_role.hpp"
#include "model/expert_backend.hpp"
#include "model/resident_expert.hpp"
#include "model/weights.hpp"
#include "transport/frame.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

/// The code an expert host puts in an error frame's `flags`, so a router can act on it.
enum class host_errc : uint32_t { bad_frame = 1, not_hosted = 2, expert_failed = 3 };

/// The router's view of a host's error code (an unknown code counts as a bad frame).
[[nodiscard]] model::expert_errc to_expert_errc(host_errc e);

/// XXH3 of an expert's gate, up and down tensors as stored (the checksum a weights frame of that
/// expert carries).
[[nodiscard]] uint64_t expert_checksum(const kernels::expert_weights& w);

struct expert_queue;

/// Validates every frame from the network before use, splits its rows by expert, lets each
/// expert actor run whatever has queued up for it as one batch (dynamic batching: no capacity,
/// no dropped token), and answers with one result frame carrying the rows in request order.
/// Each replica's weights are the host's own copy (resident memory), computed from the received
/// frame into the reply frame without staging copies when an expert's batch is one frame.
class expert_host {
 public:
  expert_host(caf::actor_system& system, const model::loaded_model& model, std::string node_name);
  ~expert_host();
  expert_host(const expert_host&) = delete;
  expert_host& operator=(const expert_host&) = delete;

  /// The most payload one dispatch frame may carry. Routers split a node's share of a batch into
  /// frames of this size (a decode step's fits in one; a long prefill takes several), so a
  /// message the seal has yet to refuse (it is checked once whole) pins at most this much per
  /// connection.
  static constexpr uint64_t max_frame_payload_bytes = 4u << 20;
  /// The most a pair costs a dispatch frame: its expert, token, row and precision ids, and a row
  /// of `hidden` floats of its own.
  static uint64_t pair_bytes(int64_t hidden) { return 16 + 4 * static_cast<uint64_t>(hidden); }
  /// Pairs one dispatch frame may carry.
  static uint32_t max_pairs_per_frame(int64_t hidden) {
    return static_cast<uint32_t>(
        std::max<uint64_t>(1, max_frame_payload_bytes / pair_bytes(hidden)));
  }
  static uint64_t max_dispatch_payload(const model::model_config& config) {
    return uint64_t{max_pairs_per_frame(config.hidden)} * pair_bytes(config.hidden);
  }
  /// The biggest request a node serving `config` accepts: a full dispatch frame (fetch frames
  /// are smaller). The transport drops bigger ones unread.
  static uint64_t max_request_bytes(const model::model_config& config) {
    return transport::frame_header_bytes + max_dispatch_payload(config);
  }

  /// Copies a replica's weights from the node's model files (at most `bytes_per_s`, 0: no cap),
  /// warms it with one row and starts serving it. Throws naming the fault (out of range, a
  /// layer without experts, already hosted).
  /// With `checksum` != 0 the copy must match it (else nothing is loaded).
  expert_loaded load(int64_t layer, int64_t expert, int64_t bytes_per_s = 0, uint64_t checksum = 0);
  /// Streams a replica's weights from `peer` (a host that serves it, `peer_name` in messages)
  /// over the data plane instead of reading the node's own files, for nodes without a copy. The
  /// bytes must match `checksum` (from the coordinator's copy of the model), or nothing is loaded
  /// and the error names the peer and both checksums.
  /// With a store (`store:`), nothing is streamed now: the store reads the expert from `peer`
  /// when a batch needs it (its slow tier is that peer), checked against `checksum`.
  expert_loaded load_from_peer(int64_t layer, int64_t expert,
                               std::shared_ptr<transport::channel> peer,
                               const std::string& peer_name, uint64_t checksum,
                               int64_t bytes_per_s = 0);
  /// Stops taking frames for the replica (they are answered not_hosted from now on), finishes
  /// what it was sent, frees its memory, then runs `done` (on an actor thread). Throws when the
  /// replica is not hosted.
  void retire(int64_t layer, int64_t expert, std::function<void()> done);
  [[nodiscard]] bool hosts(int64_t layer, int64_t expert) const;
  /// Every replica it serves, as layer * experts + expert (what it reports when it registers).
  [[nodiscard]] std::vector<int64_t> resident() const;
  /// For a head on this node: computes slots `slots` (token = slot / k, expert = ids[slot]) of one
  /// layer's batch straight into `y` (row per slot) on `pool`, like the engine does. False, with
  /// nothing written, when one of those experts is not hosted (any more).
  [[nodiscard]] bool compute_here(int64_t layer, const float* x, const int32_t* ids, int32_t k,
                                  std::span<const int32_t> slots, float* y, int64_t hidden,
                                  kernels::thread_pool& pool);

  /// Transport handler (runs on the receive thread; never throws, never crashes on bad input).
  void on_message(transport::bytes message, std::shared_ptr<transport::reply_handle> reply);
  /// Stops the expert actors and waits until none is computing (before the weights go away).
  void stop();

  [[nodiscard]] uint64_t frames_served() const { return served_.load(); }
  [[nodiscard]] uint64_t frames_dropped() const { return dropped_.load(); }
  /// Frames whose experts the node's compute threads shared, block by block (decode steps on
  /// replicas held in memory; kernels::shared_expert_jobs).
  [[nodiscard]] uint64_t frames_shared() const { return shared_.load(); }
  /// Rows computed, compute seconds, resident weight bytes.
  [[nodiscard]] host_speed speed() const;
  /// Seconds frames spent here, from arrival to their reply, summed.
  [[nodiscard]] double service_seconds() const { return service_ns_.load() * 1e-9; }
  /// Counts frames, drops, rows and compute times there; set before the first replica loads.
  void set_metrics(node_metrics* metrics) { metrics_ = metrics; }
  /// How the threads that compute replicas loaded from now on run (kernels::enter_compute_thread;
  /// node keys `compute_nice` and `pin_compute`).
  void set_compute_role(kernels::compute_role role) { compute_ = role; }
  /// Replicas loaded from now on stay in the node's files until a batch needs them (`store:`).
  void set_store(std::unique_ptr<node_store> store) { store_ = std::move(store); }
  [[nodiscard]] const node_store* store() const { return store_.get(); }

 private:
  void serve(transport::bytes message, const std::shared_ptr<transport::reply_handle>& reply);
  void serve_fetch(const transport::frame_header& h,
                   const std::shared_ptr<transport::reply_handle>& reply);
  void check_loadable(int64_t layer, int64_t expert) const;
  expert_loaded install(int64_t layer, int64_t expert, std::shared_ptr<model::resident_weights> r,
                        std::string source, std::chrono::steady_clock::time_point start);
  /// `label`: the reason a dropped frame is counted under (frames_dropped_total).
  void reject(host_errc code, std::string_view label, const std::string& reason,
              const std::shared_ptr<transport::reply_handle>& reply, uint64_t batch_id = 0);

  caf::actor_system& system_;
  const model::loaded_model& model_;
  std::string node_name_;
  mutable std::shared_mutex mutex_;  // guards queues_ and actors_ (shared: serving frames)
  std::vector<std::shared_ptr<expert_queue>>
      queues_;                      // by layer * experts + expert; null: not hosted
  std::vector<caf::actor> actors_;  // same index as queues_
  std::atomic<uint64_t> served_{0}, dropped_{0}, shared_{0}, rows_{0}, compute_ns_{0},
      service_ns_{0};
  std::unique_ptr<node_store> store_;
  std::atomic<int64_t> resident_bytes_{0};
  node_metrics* metrics_ = nullptr;
  kernels::compute_role compute_;
};

}  // namespace xmesh::actors
