// The head's router: picks a replica per (token, expert), sends one frame per destination node
// per layer, gathers the replies and hands the outputs back to the MoE block, which combines
// them in its fixed order (model/moe_block.cpp).
#pragma once

#include <atomic>
#include <vector>

#include "actors/placement_table.hpp"
#include "model/expert_backend.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

/// An expert_backend whose experts live on other nodes. One per request (session); the
/// channels are shared. Throws std::runtime_error naming the node when a dispatch fails.
class router final : public model::expert_backend {
 public:
  router(const placement_table& table, std::vector<transport::channel*> channels, int64_t hidden);
  void run(int64_t layer, const float* x, int64_t num_tokens, const int32_t* expert_ids, int32_t k,
           float* y) override;

  /// Dispatch round trips so far and their total seconds (for the per-layer dispatch time).
  [[nodiscard]] int64_t dispatches() const { return dispatches_; }
  [[nodiscard]] double dispatch_seconds() const { return dispatch_seconds_; }
  /// The table's index of the node that failed the last dispatch, or -1.
  [[nodiscard]] int failed_node() const { return failed_node_; }

 private:
  void accept_reply(int64_t layer, size_t node, const std::vector<int32_t>& experts,
                    const std::vector<int32_t>& slots, const transport::bytes& reply,
                    const std::string& error, float* y) const;

  const placement_table& table_;
  std::vector<transport::channel*> channels_;
  int64_t hidden_;
  uint64_t next_batch_ = 1;
  int64_t dispatches_ = 0;
  double dispatch_seconds_ = 0;
  int failed_node_ = -1;
};

}  // namespace xmesh::actors
