// When a progress thread should poll before it sleeps.
//
// Sleeping in the kernel and being woken costs tens of microseconds on virtual machines (an idle
// vCPU halts; this project's VMs measure 30-45 us per wake), more than a whole loopback round
// trip. Polling for that long after every event would instead take the core from compute on
// nodes whose next event is a millisecond away. So: poll only while the recent idle gaps (time
// from running out of work to the next event) were shorter than the budget, else sleep at once.
// Spin-then-block bounded by the wake cost is within 2x of the best choice in hindsight.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace xmesh::transport {

class spin_policy {
 public:
  using duration = std::chrono::nanoseconds;

  explicit spin_policy(duration budget) : budget_(budget) {}

  /// XMESH_<NAME>_SPIN_US overrides `default_us` (0: never poll, pure wakeup mode).
  static spin_policy from_env(const char* variable, long default_us) {
    const char* v = std::getenv(variable);
    long us = v ? std::max(0L, std::strtol(v, nullptr, 10)) : default_us;
    return spin_policy(std::chrono::microseconds(us));
  }

  /// How long to poll before sleeping now.
  [[nodiscard]] duration spin_for() const {
    return estimate_ <= budget_ ? budget_ : duration::zero();
  }

  /// Records the idle gap before the event that just arrived (polled for or slept through).
  /// An exponential average (weight 1/4) of gaps capped at 3x the budget: one long pause does not
  /// stop polling, a run of them does, and a run of short gaps brings it back.
  void record_gap(duration gap) {
    const duration capped = std::min(gap, 3 * budget_);
    estimate_ = (3 * estimate_ + capped) / 4;
  }

  [[nodiscard]] duration budget() const { return budget_; }

 private:
  duration budget_;
  duration estimate_{0};
};

}  // namespace xmesh::transport
