// The router's seam for choosing which replica of an expert serves a row. Any replica gives the
// same bits (batch-invariant kernels), so a policy changes only speed: the least loaded replica,
// or the one expected to answer first over the links as measured (latency-aware).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace xmesh::actors {

/// Picks one of `replicas` (node indices of the placement table, never empty). The router calls
/// it under its own lock, so a policy needs none.
class replica_policy {
 public:
  virtual ~replica_policy() = default;
  /// `outstanding[n]`: rows sent to node n and not yet answered, this batch's choices included.
  [[nodiscard]] virtual int32_t choose(int64_t layer, int64_t expert,
                                       std::span<const int32_t> replicas,
                                       std::span<const int64_t> outstanding) const = 0;
  /// A frame of `rows` (token, expert) pairs to node `node` was answered after `round_trip_s`
  /// (negative: it failed).
  virtual void observe(int32_t node, int64_t rows, double round_trip_s) {
    (void)node, (void)rows, (void)round_trip_s;
  }
};

/// The replica whose node has the fewest rows outstanding; ties go to the replica listed first
/// after rotating by expert, so equal nodes share the work.
class least_outstanding_policy final : public replica_policy {
 public:
  [[nodiscard]] int32_t choose(int64_t layer, int64_t expert, std::span<const int32_t> replicas,
                               std::span<const int64_t> outstanding) const override {
    const auto n = static_cast<int64_t>(replicas.size());
    int32_t best = replicas[(expert + layer) % n];
    for (int64_t i = 0; i < n; ++i) {
      int32_t r = replicas[(expert + layer + i) % n];
      if (outstanding[r] < outstanding[best]) best = r;
    }
    return best;
  }
};

/// The replica expected to answer first (WDMoE's latency-aware choice over wireless links). Per
/// node it learns from answered frames a fixed part of the round trip (link delay and fixed
/// costs: the floor of the round trips, drifting up slowly so a slower link is noticed) and a
/// part per row (bytes over the link's rate, and compute): expected completion = fixed +
/// (rows already outstanding there + 1) x per row. A node not measured yet is tried first (one
/// frame at a time); a failed frame counts as a 1 s round trip, so a failing node is avoided
/// until it answers again. Estimates are kept by the placement table's node index.
class latency_aware_policy final : public replica_policy {
 public:
  [[nodiscard]] int32_t choose(int64_t layer, int64_t expert, std::span<const int32_t> replicas,
                               std::span<const int64_t> outstanding) const override {
    const auto n = static_cast<int64_t>(replicas.size());
    int32_t best = -1;
    double best_s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t r = replicas[(expert + layer + i) % n];
      const double s = expected_s(r, outstanding[r]);
      if (best < 0 || s < best_s) best = r, best_s = s;
    }
    return best;
  }

  void observe(int32_t node, int64_t rows, double round_trip_s) override {
    if (node < 0 || rows <= 0) return;
    if (round_trip_s < 0) round_trip_s = 1.0;  // failed: as if it took a second
    if (static_cast<size_t>(node) >= nodes_.size()) nodes_.resize(node + 1);
    auto& e = nodes_[node];
    if (e.samples++ == 0 || round_trip_s < e.fixed_s)
      e.fixed_s = round_trip_s;
    else
      e.fixed_s += 0.02 * (round_trip_s - e.fixed_s);
    const double per_row = (round_trip_s - e.fixed_s) / static_cast<double>(rows);
    e.per_row_s = e.samples == 1 ? per_row : e.per_row_s + 0.2 * (per_row - e.per_row_s);
  }

  /// Seconds until node `node` would answer one more row, `outstanding` rows being there.
  [[nodiscard]] double expected_s(int32_t node, int64_t outstanding) const {
    if (static_cast<size_t>(node) >= nodes_.size() || nodes_[node].samples == 0)
      return outstanding == 0 ? 0 : 1.0;  // not measured: free, or waiting for its first answer
    const auto& e = nodes_[node];
    return e.fixed_s + static_cast<double>(outstanding + 1) * e.per_row_s;
  }

 private:
  struct estimate {
    int64_t samples = 0;
    double fixed_s = 0, per_row_s = 0;
  };
  std::vector<estimate> nodes_;
};

/// The policy the cluster file's `replica_choice` names: least_outstanding (default) or latency.
/// Throws naming the known ones.
inline std::unique_ptr<replica_policy> make_replica_policy(const std::string& name) {
  if (name.empty() || name == "least_outstanding")
    return std::make_unique<least_outstanding_policy>();
  if (name == "latency") return std::make_unique<latency_aware_policy>();
  throw std::runtime_error("replica_choice: unknown policy '" + name +
                           "' (least_outstanding, latency)");
}

}  // namespace xmesh::actors
