// Expert jobs computed together by whichever threads come to help, whenever they come.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/expert_ffn.hpp"

namespace xmesh::kernels {

/// A set of expert jobs whose row blocks go to every thread that calls help(), arriving at any
/// time: the compute threads of an expert node share one frame's experts this way, as one
/// process's pool shares a layer's, so a node whose frame names more experts than it has threads
/// keeps them all busy to the end instead of leaving one to compute the odd expert alone.
///
/// A helper takes a down-projection block of a job whose gate/up blocks are all done, else the
/// next gate/up block of any job (the one finishing a job's gate/up rows activates it); with
/// nothing left to take it waits for the blocks others hold. These are run_experts' blocks and
/// arithmetic, so the bits are the same whoever computes which block.
class shared_expert_jobs {
 public:
  /// At least one job.
  explicit shared_expert_jobs(const std::vector<expert_job>& jobs);
  shared_expert_jobs(const shared_expert_jobs&) = delete;
  shared_expert_jobs& operator=(const shared_expert_jobs&) = delete;

  /// Computes blocks until none is left, then waits until every job is done. Returns true in
  /// exactly one caller: the one that finished the last block (it then owns the results), which
  /// first runs `answer` (if any), before it wakes the helpers waiting for that block: on a
  /// virtual machine each wake-up costs the waker tens of microseconds.
  bool help(const std::function<void()>& answer = {});

  [[nodiscard]] bool done() const { return jobs_done_.load() == static_cast<int>(jobs_.size()); }

 private:
  struct job_state {
    expert_job job;
    std::vector<float> gate_up;
    int up_blocks = 0, down_blocks = 0;
    std::atomic<int> up_done{0};
    std::atomic<bool> active{false};  // gate/up rows done and activated: down blocks may start
    std::atomic<int> down_next{0};
    std::atomic<int> down_done{0};
  };

  job_state* job_with_down_left();
  void announce();  // a job became active or done: wakes helpers waiting for one
  bool finish_job(const std::function<void()>& answer);

  std::vector<std::unique_ptr<job_state>> jobs_;
  std::vector<int> first_up_;  // job j's gate/up blocks are [first_up_[j], first_up_[j + 1])
  std::atomic<int> up_next_{0};
  std::atomic<int> jobs_done_{0};
  std::atomic<uint32_t> events_{0};  // bumped by announce(); waiters sleep on it
  std::atomic<int> waiters_{0};
};

}  // namespace xmesh::kernels
