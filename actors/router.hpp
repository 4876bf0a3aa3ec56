// The router service of a head: owns every expert batch in flight. It picks a replica for each
// (token, expert) with a replica_policy, sends one frame per destination node with the rows
// gathered straight into it, copies the replies into the MoE block's buffer, re-sends rows whose
// node failed or no longer hosts their expert, and enforces a deadline per batch. It is the MoE
// block's expert_backend on a head, shared by all of the head's requests.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "actors/load_window.hpp"
#include "actors/metrics.hpp"
#include "actors/placement_table.hpp"
#include "actors/protocol.hpp"
#include "actors/replica_policy.hpp"
#include "model/expert_backend.hpp"
#include "model/routing_policy.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

/// What a router is configured with.
struct router_options {
  uint16_t head_id = 0;  // the top 16 bits of every batch id: ids are unique in the cluster
  std::chrono::milliseconds deadline{60000};  // per batch, re-sends included
  int max_resends = 4;                        // per batch
  int64_t window_s = 10;                      // routed-token counts cover this many seconds
  std::chrono::milliseconds suspicion{3000};  // how long a node that failed a frame is avoided
};

/// Opens a channel to a node's data address; throws naming the address when unreachable.
using channel_opener = std::function<std::unique_ptr<transport::channel>(const std::string&)>;

class expert_host;

struct batch_state;
struct batch_part;

/// Thread-safe: submit() from every session thread, replies on transport threads, tables from
/// the node actor.
class router_service final : public model::expert_backend {
 public:
  router_service(int64_t hidden, router_options options, channel_opener open,
                 std::unique_ptr<replica_policy> policy = nullptr);
  ~router_service() override;

  /// Routes with `table` from now on, if it is newer than the current one.
  void set_table(std::shared_ptr<const placement_table> table);
  [[nodiscard]] std::shared_ptr<const placement_table> table() const;
  /// Runs `done` (maybe at once, maybe on a transport thread) once no frame routed with a
  /// version older than `version` is in flight: then the replicas only old tables named can go.
  void when_drained(uint64_t version, std::function<void()> done);

  /// Slots marked `low_precision` go out marked so (frame_flag_precision): the node computes them
  /// with its store's low-precision copy. The head never computes them itself: it has no such
  /// copy, so one whose node is gone fails the request naming the expert.
  std::unique_ptr<model::expert_batch> submit(int64_t layer, const float* x, int64_t num_tokens,
                                              const int32_t* expert_ids, int32_t k, float* y,
                                              const uint8_t* low_precision = nullptr) override;
  /// submit(), and rows whose chosen replica is on this node (`set_local`) are computed here,
  /// on `pool`, while the other nodes' frames are out: no frame, no actor, no copy beyond the
  /// kernels' own gather.
  std::unique_ptr<model::expert_batch> submit_on(int64_t layer, const float* x, int64_t num_tokens,
                                                 const int32_t* expert_ids, int32_t k, float* y,
                                                 kernels::thread_pool* pool,
                                                 const uint8_t* low_precision = nullptr);
  /// This node's expert host and name (a head that also hosts experts).
  void set_local(expert_host* host, std::string node_name);
  /// The head's own model files: rows of an expert with no replica (its node died), or whose
  /// only replica's node stopped answering, are computed from them on the session's pool.
  void set_fallback(const model::model_weights* weights) { fallback_ = weights; }
  /// Computes on the head (from its files) the rows that would miss in an expert node's store
  /// once its layer is full, instead of making the node read the expert from its slow tier
  /// (`store_misses: head`; Fiddler's and HybriMoE's "compute where the activations are"). The
  /// head knows what a node holds from a mirror of its store, keyed by node name: the node's
  /// cache size, fed with what this head sends there. Rows go to the node while its layer has
  /// room, so each layer keeps the first experts it was sent and never evicts (its eviction
  /// setting no longer matters). The mirror only steers where rows compute: the same weights
  /// give the same bits anywhere, so a stale one (several heads) costs speed only.
  void mirror_stores(std::map<std::string, std::unique_ptr<model::expert_cache_model>> mirrors);
  /// Expert nodes whose stores prefetch (`prefetch=1` in node key store:), by name.
  void set_prefetching(std::set<std::string> nodes);
  /// Pre-gating: asks every prefetching node that hosts one of `experts` of `layer` to start
  /// loading them (a prefetch frame; its answer is not awaited). Output never depends on it.
  void prefetch(int64_t layer, std::span<const int32_t> experts);
  /// Counts routed tokens, frames, bytes, round trips and re-sends there (before tables arrive).
  void set_metrics(node_metrics* metrics) { metrics_ = metrics; }
  [[nodiscard]] node_metrics* metrics() const { return metrics_; }
  [[nodiscard]] bool computes_from_files() const { return fallback_ != nullptr; }

  /// Routed tokens per (layer, expert) over the window, and the mean round trip per node.
  [[nodiscard]] head_load load();
  /// Frames in flight (sent, not answered or abandoned).
  [[nodiscard]] int64_t frames_in_flight() const;
  /// Rows re-sent after a node failed them or no longer hosted their expert.
  [[nodiscard]] uint64_t rows_resent() const { return resent_.load(); }
  /// Frames sent, and seconds spent building them, handling their replies, and waiting for them.
  struct frame_times {
    uint64_t frames = 0;
    double encode_s = 0, decode_s = 0, round_trip_s = 0;
  };
  [[nodiscard]] frame_times times() const {
    return {frames_.load(), encode_ns_.load() * 1e-9, decode_ns_.load() * 1e-9,
            round_trip_ns_.load() * 1e-9};
  }

  // -- used by batches (router.cpp) ---------------------------------------------------------
  /// One frame of a node's share of a batch: `pairs` (expert, slot), sorted by expert, with a
  /// fresh batch id (called under mutex_).
  batch_part make_part(const placement_table& table, int32_t node, const batch_state& batch,
                       std::span<const std::pair<int32_t, int32_t>> pairs);
  /// Sends part `index` of `batch` (its rows chosen), or fails it at once if the node is
  /// unreachable.
  void send_part(const std::shared_ptr<batch_state>& batch, size_t index);
  /// Rows the head computes itself: on its own replicas, or from its model files.
  struct head_rows {
    std::vector<int32_t> replicas, files;
    size_t store_misses = 0;  // of `files`: rows a node's store would have missed
  };
  /// Chooses replicas for `slots` of `batch` with the newest table, avoiding `avoid` and suspect
  /// nodes where another replica exists, and sends one part per node; rows for the head itself
  /// go to `here` (when given).
  void route(const std::shared_ptr<batch_state>& batch, const std::vector<int32_t>& slots,
             int32_t avoid, head_rows* here = nullptr);
  /// route(), then computes the head's own rows (when the batch has a pool) before returning.
  void dispatch(const std::shared_ptr<batch_state>& batch, const std::vector<int32_t>& slots,
                int32_t avoid);
  /// Throws naming the expert when one of `slots` is marked low-precision.
  void compute_from_files(const batch_state& batch, std::span<const int32_t> slots);
  /// Accounts for a part that was answered (`round_trip_s` and `reply_s` >= 0) or failed or
  /// abandoned (-1), exactly once per part.
  void settle(int32_t node, uint64_t version, int64_t rows, double round_trip_s, double reply_s);
  /// Avoids `node`'s replicas for a while after a transport error: its death reaches the table
  /// only after the heartbeat timeout, and reconnecting to a dead node would stall each batch.
  void suspect(int32_t node);
  /// Drops a node's channel after a transport failure; the next frame reconnects.
  void forget_channel(const std::string& address);
  /// `why`: unreachable, not_hosted, dropped (the node left the placement), files (computed on
  /// the head from its own model files).
  void count_resent(uint64_t rows, std::string_view why) {
    resent_ += rows;
    if (metrics_) metrics_->resent(why).Increment(static_cast<double>(rows));
  }
  [[nodiscard]] const router_options& options() const { return options_; }
  [[nodiscard]] int64_t hidden() const { return hidden_; }

 private:
  std::shared_ptr<transport::channel> channel(const std::string& address);
  void notify_drained();

  int64_t hidden_;
  router_options options_;
  channel_opener open_;
  std::unique_ptr<replica_policy> policy_;
  expert_host* local_host_ = nullptr;
  const model::model_weights* fallback_ = nullptr;
  node_metrics* metrics_ = nullptr;
  std::string local_name_;
  mutable std::mutex mutex_;  // guards everything below that is not atomic
  std::shared_ptr<const placement_table> table_;
  std::map<std::string, std::shared_ptr<transport::channel>> channels_;  // by data address
  std::vector<int64_t> outstanding_;  // rows in flight per node index
  std::vector<std::chrono::steady_clock::time_point> suspect_until_;  // per node index
  std::vector<double> rtt_sum_, rtt_count_;  // per node index, since the last load()
  std::vector<node_metrics::peer*> peers_;   // per node index, when metrics are on
  std::map<uint64_t, int64_t> in_flight_;    // frames in flight per placement version
  std::multimap<uint64_t, std::function<void()>> drain_waiters_;
  std::unique_ptr<load_window> tokens_;
  std::atomic<uint64_t> next_batch_{1}, resent_{0};
  std::map<std::string, std::unique_ptr<model::expert_cache_model>> mirrors_;
  std::set<std::string> prefetching_;
  std::atomic<uint64_t> frames_{0}, encode_ns_{0}, decode_ns_{0}, round_trip_ns_{0};
};

/// A session's view of the router: local replicas computed on the session's pool, and its own
/// round trips counted for the request's reply.
class counted_backend final : public model::expert_backend {
 public:
  counted_backend(router_service& inner, kernels::thread_pool& pool) : inner_(inner), pool_(pool) {}
  std::unique_ptr<model::expert_batch> submit(int64_t layer, const float* x, int64_t num_tokens,
                                              const int32_t* expert_ids, int32_t k, float* y,
                                              const uint8_t* low_precision = nullptr) override;
  [[nodiscard]] int64_t dispatches() const { return dispatches_; }
  [[nodiscard]] double dispatch_seconds() const { return dispatch_seconds_; }
  /// Pre-gating's prediction for `layer` in this decode step; scored (xmesh_pregate_experts_total)
  /// against what the layer routes to when it is submitted.
  void predicted(int64_t layer, std::vector<int32_t> experts);

 private:
  router_service& inner_;
  kernels::thread_pool& pool_;
  int64_t dispatches_ = 0;
  double dispatch_seconds_ = 0;
  int64_t predicted_layer_ = -1;
  std::vector<int32_t> predicted_;
};

}  // namespace xmesh::actors
