// The metrics catalogue: every Prometheus metric an ExpertMesh node exports, registered once with
// its help text, and the handles hot paths bump (resolved ahead: no label lookup per frame or
// token). A node has one node_metrics when its cluster-file entry names a `metrics_port`.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "actors/node_store.hpp"
#include "transport/gate/control_gate.hpp"
#include "transport/gate/library_accepts.hpp"

namespace xmesh::actors {

struct placement_table;

/// One metric of the catalogue (names follow Prometheus conventions: `xmesh_` + base units).
struct metric_spec {
  std::string_view name, type, labels, help;
};

/// Every metric a node may export; dashboards and rules may name only these.
const std::vector<metric_spec>& metric_catalogue();

/// Why a request failed (the `reason` label).
enum class request_failure { model_mismatch, not_ready, expert_node, other };

/// Kinds of change to the placement (`kind` label) and how they ended (`outcome`).
enum class order_kind { replication, migration, retirement };

class node_metrics {
 public:
  /// `expert_series`: above this many (layer, expert) pairs, per-expert series are summed per
  /// layer (label expert="all") so a DeepSeek-V3-sized model stays within bounds.
  node_metrics(const std::string& node, const std::string& transport, int64_t expert_series);

  [[nodiscard]] std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  /// The exposition text, as a scrape would get it (tests).
  [[nodiscard]] std::string text() const;

  // -- head: requests ---------------------------------------------------------------------------
  void request_started();
  /// A finished request: its prompt and generated tokens, when each token was picked (from the
  /// request's start) and its end-to-end time.
  void request_done(int64_t prompt_tokens, const std::vector<double>& token_seconds, double e2e_s);
  void request_failed(request_failure why);

  // -- head: routing (router_service) ----------------------------------------------------------
  /// Token counters per (layer, expert) for a model's shape; call before tokens_routed().
  void set_shape(int64_t layers, int64_t experts);
  prometheus::Counter& tokens_routed(int64_t slot) { return *tokens_[slot]; }
  struct peer {
    prometheus::Counter *frames_sent, *bytes_sent, *frames_received, *bytes_received;
    prometheus::Histogram* round_trip;
  };
  /// The handles of one peer node (resolved once per name).
  peer& peer_of(const std::string& name);
  prometheus::Histogram& frame_rows() { return *frame_rows_; }
  prometheus::Counter& store_misses_on_head() { return *misses_on_head_; }
  /// Pre-gating (prefetching stores): `predicted` experts, `used` at the layers predicted for,
  /// and `correct` (predicted and used): precision = correct / predicted, recall = correct / used.
  prometheus::Counter& pregate(std::string_view what);
  /// Rows re-sent: `unreachable`, `not_hosted`, `dropped` (node left the placement), `files`
  /// (computed on the head from its own model files).
  prometheus::Counter& resent(std::string_view why);

  // -- expert host ---------------------------------------------------------------------------
  prometheus::Counter& frames_served() { return *frames_served_; }
  prometheus::Counter& bytes_received() { return *bytes_received_; }
  /// Frames refused: a frame error code (truncated, bad_checksum, ...) or `not_dispatch`,
  /// `dense_layer`, `internal`; on any node, messages the seal dropped: `unauthenticated`,
  /// `replayed`.
  prometheus::Counter& frames_dropped(std::string_view reason);
  prometheus::Histogram& expert_compute() { return *expert_compute_; }
  prometheus::Counter& expert_rows() { return *expert_rows_; }
  void set_memory(int64_t used_bytes, int64_t budget_bytes);
  /// Mirrors an expert store's counts (node key store:).
  void set_store(const node_store& store);

  // -- every node --------------------------------------------------------------------------------
  void set_placement_version(uint64_t v) { placement_version_->Set(static_cast<double>(v)); }
  /// Mirrors the control gate's counters (it counts; the series catch up at each refresh).
  void set_control(const transport::gate_counters& counters);
  /// The data-plane connections libzmq and UCX accepted here, and those the caps refused.
  void set_data_connections(const transport::library_accept_counts& counts);

  // -- coordinator ---------------------------------------------------------------------------
  /// Replicas per (layer, expert) of a new table.
  void set_replicas(const placement_table& table);
  void order_done(order_kind kind, bool ok, int64_t bytes_moved);
  void set_rebalancing(bool busy) { rebalancing_->Set(busy ? 1 : 0); }
  void set_balancedness(double b) { balancedness_->Set(b); }
  /// Live members, and seconds since each member's last heartbeat.
  void set_membership(int64_t up, const std::map<std::string, double>& heartbeat_age_s);
  void failover() { failovers_->Increment(); }
  void rejoin() { rejoins_->Increment(); }

 private:
  prometheus::Counter& counter(std::string_view name, const prometheus::Labels& labels = {});
  prometheus::Gauge& gauge(std::string_view name, const prometheus::Labels& labels = {});
  prometheus::Histogram& histogram(std::string_view name, const std::vector<double>& buckets,
                                   const prometheus::Labels& labels = {});
  prometheus::Labels slot_labels(int64_t layer, int64_t expert) const;

  std::shared_ptr<prometheus::Registry> registry_;
  std::string node_, transport_;
  int64_t expert_series_;
  std::mutex mutex_;  // guards the lookups below (hot paths use resolved handles)
  std::map<std::string_view, prometheus::Family<prometheus::Counter>*> counters_;
  std::map<std::string_view, prometheus::Family<prometheus::Gauge>*> gauges_;
  std::map<std::string_view, prometheus::Family<prometheus::Histogram>*> histograms_;
  std::map<std::string, peer> peers_;
  std::vector<prometheus::Counter*> tokens_;
  std::vector<prometheus::Counter*> control_;  // outcomes in gate_counters' order, then backoffs
  std::vector<prometheus::Counter*> data_connections_;  // admitted, host_cap, total_cap
  prometheus::Gauge* data_connections_live_ = nullptr;
  int64_t experts_ = 0;
  prometheus::Counter *requests_, *prompt_tokens_, *generation_tokens_, *frames_served_,
      *bytes_received_, *expert_rows_, *failovers_, *rejoins_, *bytes_moved_;
  prometheus::Gauge *running_, *memory_, *budget_, *placement_version_, *rebalancing_,
      *balancedness_, *nodes_up_;
  prometheus::Histogram *ttft_, *tpot_, *e2e_, *frame_rows_, *expert_compute_;
  prometheus::Counter* misses_on_head_ = nullptr;
};

}  // namespace xmesh::actors
