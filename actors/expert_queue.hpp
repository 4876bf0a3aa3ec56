// How an expert node computes: the frames it is answering, the runs of pairs queued per hosted
// replica, and the replica actors' work on them (actors/expert_host.cpp receives the frames and
// manages the replicas).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "actors/metrics.hpp"
#include "actors/node_store.hpp"
#include "kernels/core/thread_pool.hpp"
#include "kernels/core/thread_role.hpp"
#include "kernels/expert_ffn.hpp"
#include "kernels/shared_experts.hpp"
#include "model/resident_expert.hpp"
#include "transport/frame.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

/// One received dispatch frame until every expert it names has answered; the reply is built in
/// place as the experts compute.
struct pending_frame {
  using clock_type = std::chrono::steady_clock;

  transport::bytes message;  // owns the bytes `view` points into
  transport::frame_view view;
  std::optional<transport::frame_builder> reply_frame;
  std::atomic<int> remaining{0};  // runs not yet computed (frames not shared)
  std::atomic<bool> failed{false};
  std::shared_ptr<transport::reply_handle> reply;
  std::atomic<uint64_t>* served = nullptr;
  std::atomic<uint64_t>* service_ns = nullptr;
  prometheus::Counter* served_metric = nullptr;
  clock_type::time_point arrived = clock_type::now();
  // A decode step's frame (every expert it names resident at full precision, one run of
  // consecutive rows each): the threads of the replicas it wakes compute all of its experts
  // together, block by block, instead of one expert each; the last block's thread answers.
  std::unique_ptr<kernels::shared_expert_jobs> shared;
  std::vector<std::shared_ptr<model::resident_weights>> shared_weights;  // outlive a retirement

  /// Seals and sends the reply, unless the frame failed.
  void finish();
  /// Answers once with an error, so the requester fails fast instead of timing out.
  void fail(const std::string& why);
};

/// Consecutive pairs [first, first + count) of a frame for one expert (routers sort a frame's
/// pairs by expert).
struct frame_run {
  std::shared_ptr<pending_frame> frame;
  uint32_t first = 0, count = 0;
  bool low = false;  // computed with the store's low-precision copy (marked by the head)

  /// Its pairs read consecutive rows of the frame (always so for one pair: a decode step).
  [[nodiscard]] bool reads_consecutive_rows() const;
  /// The job computing it with `w` straight from the request frame into the reply frame.
  [[nodiscard]] kernels::expert_job job(const kernels::expert_weights& w) const;
};

/// The runs queued for one hosted replica; its actor drains them as one batch.
struct expert_queue {
  using clock_type = std::chrono::steady_clock;

  std::shared_ptr<model::resident_weights> resident;  // null: the node's store holds it
  node_store* store = nullptr;
  node_store* low_store = nullptr;  // the node's store, for pairs marked low-precision
  int64_t layer = 0, expert = 0;
  std::mutex mutex;
  std::vector<frame_run> items;
  bool scheduled = false;
  std::function<void()> on_retired;
  kernels::thread_pool pool{1};  // runs inline: parallelism comes from many expert actors
  kernels::compute_role role;    // how the threads that run it yield to frame movers
  std::atomic<uint64_t>* rows = nullptr;
  std::atomic<uint64_t>* compute_ns = nullptr;
  node_metrics* metrics = nullptr;

  /// Adds a run; true when the actor must be woken.
  bool push(frame_run r);
  /// The actor's work: runs everything queued, again and again, until the queue is empty.
  void run();

 private:
  void compute(std::vector<frame_run>& batch);
  void help(pending_frame& f);
  int64_t run_with(const kernels::expert_weights& w, const std::vector<const frame_run*>& runs);
  void record(clock_type::duration took, int64_t computed_rows);
};

/// Makes `frame` a shared one (pending_frame::shared) when it is a decode step's; true if so.
/// `layer_queues`: the replicas of the frame's layer, every one its runs name hosted.
bool share_if_decode(pending_frame& frame, const std::vector<std::pair<int32_t, frame_run>>& runs,
                     std::span<const std::shared_ptr<expert_queue>> layer_queues);

}  // namespace xmesh::actors
