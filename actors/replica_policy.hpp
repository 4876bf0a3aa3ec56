// The router's seam for choosing which replica of an expert serves a row. Any replica gives the
// same bits (batch-invariant kernels), so a policy changes only speed: today the least loaded
// replica; latency-aware and cache-aware choices plug in here.
#pragma once

#include <cstdint>
#include <span>

namespace xmesh::actors {

/// Picks one of `replicas` (node indices of the placement table, never empty).
class replica_policy {
 public:
  virtual ~replica_policy() = default;
  /// `outstanding[n]`: rows sent to node n and not yet answered, this batch's choices included.
  [[nodiscard]] virtual int32_t choose(int64_t layer, int64_t expert,
                                       std::span<const int32_t> replicas,
                                       std::span<const int64_t> outstanding) const = 0;
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

}  // namespace xmesh::actors
