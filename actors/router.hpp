// Routing on a head: one router actor per MoE layer picks a replica for every (token, expert),
// sends one frame per destination node and gathers the replies; the session's expert backend
// checks them and hands the outputs to the MoE block, which combines them in its fixed order
// (model/moe_block.cpp).
#pragma once

#include <caf/all.hpp>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "actors/placement_table.hpp"
#include "model/expert_backend.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

/// Rows of one dispatch bound for one node.
struct outbound {
  std::vector<int32_t> experts, slots;
  std::vector<float> rows;
};

/// One MoE layer's batch of one request, from the session to the layer's router actor and
/// back. Local only: it points into the session's buffers and channels.
struct dispatch_job {
  // -- set by the session --------------------------------------------------------------------
  int64_t layer = 0;
  const float* x = nullptr;
  int64_t num_tokens = 0;
  const int32_t* expert_ids = nullptr;
  int32_t k = 0;
  int64_t hidden = 0;
  uint64_t first_batch_id = 0;
  std::shared_ptr<const placement_table> table;
  std::vector<transport::channel*> channels;  // by the table's node index
  // -- set by the router actor (replies written by transport threads, one slot each) ----------
  std::vector<outbound> to;
  std::vector<transport::bytes> replies;
  std::vector<std::string> errors;
  size_t remaining = 0;  // touched by the router actor only
  std::promise<void> done;
};

using dispatch_job_ptr = std::shared_ptr<dispatch_job>;

/// The router actor of one MoE layer: never blocks, so any number of requests are in flight.
caf::behavior router_actor(caf::event_based_actor* self);

/// The session's expert backend: each layer's batch goes to that layer's router actor; the
/// replies are checked here. Throws naming the node when a dispatch fails.
class routed_experts final : public model::expert_backend {
 public:
  routed_experts(std::shared_ptr<const placement_table> table,
                 std::vector<transport::channel*> channels, const std::vector<caf::actor>& routers,
                 int64_t hidden);
  void run(int64_t layer, const float* x, int64_t num_tokens, const int32_t* expert_ids, int32_t k,
           float* y) override;

  /// Dispatch round trips so far and their total seconds (for the per-layer dispatch time).
  [[nodiscard]] int64_t dispatches() const { return dispatches_; }
  [[nodiscard]] double dispatch_seconds() const { return dispatch_seconds_; }
  /// The table's index of the node that failed the last dispatch, or -1.
  [[nodiscard]] int failed_node() const { return failed_node_; }

 private:
  void accept_reply(const dispatch_job& job, size_t node, float* y) const;

  std::shared_ptr<const placement_table> table_;
  std::vector<transport::channel*> channels_;
  const std::vector<caf::actor>& routers_;
  int64_t hidden_;
  uint64_t next_batch_ = 1;
  int64_t dispatches_ = 0;
  double dispatch_seconds_ = 0;
  int failed_node_ = -1;
};

}  // namespace xmesh::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(xmesh::actors::dispatch_job_ptr)
