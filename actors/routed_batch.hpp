// One layer's batch of one request on a head, from the router's submit() until wait() returns:
// its parts (one frame per node), their replies copied into the MoE block's outputs, re-sends of
// failed parts, and the deadline. The router service (router.hpp) routes and sends the parts.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "actors/metrics.hpp"
#include "kernels/core/thread_pool.hpp"
#include "model/expert_backend.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

class router_service;

/// One frame of a batch: the rows sent to one node.
struct batch_part {
  int32_t node = 0;
  std::string node_name, address;
  uint64_t batch_id = 0, version = 0;
  std::vector<int32_t> slots, experts;  // one pair each, ordered by expert, then slot
  std::vector<int32_t> row_of_pair;     // which of `tokens` each pair reads
  std::vector<int32_t> tokens;          // the rows sent: each token once
  std::vector<int32_t> precision;       // per pair, 1: low-precision (empty: all full)
  std::chrono::steady_clock::time_point sent;
  bool settled = false;  // accounted for in the router (answered or abandoned)
  bool failed = false, handled = false;
  bool given_up = false;  // its node left the placement unanswered: a late reply is ignored
  node_metrics::peer* metered = nullptr;  // its node's counters, when metrics are on
  model::expert_errc error = model::expert_errc::ok;
  std::string why;
};

/// A layer's batch of one request, from submit() until wait() returns.
struct batch_state {
  router_service* router = nullptr;
  int64_t layer = 0;
  const float* x = nullptr;
  const int32_t* expert_ids = nullptr;
  const uint8_t* low_precision = nullptr;  // per slot (null: all full precision)
  int32_t k = 0;
  float* y = nullptr;
  kernels::thread_pool* pool = nullptr;  // the session's: rows computed on the head run on it
  std::chrono::steady_clock::time_point deadline;
  std::mutex mutex;
  std::condition_variable answered;
  std::deque<batch_part> parts;  // a deque: parts keep their address while re-sends append
  int pending = 0;
  int resends = 0;
  bool abandoned = false;  // past the deadline: `y` may be gone, late replies are ignored
};

/// Classifies the reply to part `index` (or its transport `error`); on success copies its rows
/// into the batch's outputs, otherwise marks the part failed for wait() to re-send or fail.
void on_reply(const std::shared_ptr<batch_state>& b, size_t index, transport::bytes reply,
              const std::string& error);

/// The MoE block's handle on `b`: wait() re-sends failed parts and enforces the deadline.
std::unique_ptr<model::expert_batch> make_routed_batch(std::shared_ptr<batch_state> b);

}  // namespace xmesh::actors
