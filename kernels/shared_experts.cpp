#include "kernels/shared_experts.hpp"

#include <algorithm>
#include <chrono>

namespace xmesh::kernels {

namespace {

// How long a helper with nothing to take polls before it sleeps: the take whose end activates
// the last job is often about to end; if not, sleeping frees the core for the threads it waits
// for (on a shared machine, possibly the very core they need).
constexpr auto poll_before_sleeping = std::chrono::microseconds(10);

// Blocks a helper takes at once: 256 rows, 512 KiB of bf16 weights at hidden 1024. Finer takes
// cost more than their balance gains: each is atomic operations on cache lines the helpers share
// and a new stream for the memory prefetchers. Cluster decode against an expert per thread
// (paired A/B, bench model, 12 rounds each over UCX): 1 block 0.97x, 4 1.03x, 8 1.05x, 16 1.08x,
// 32 1.06x.
constexpr int blocks_per_take = 16;

}  // namespace

shared_expert_jobs::shared_expert_jobs(const std::vector<expert_job>& jobs) {
  first_up_.push_back(0);
  for (const auto& job : jobs) {
    auto s = std::make_unique<job_state>();
    s->job = job;
    s->gate_up.resize(static_cast<size_t>(gate_up_floats(job)));
    s->up_blocks = static_cast<int>(expert_blocks(2 * job.weights->intermediate()));
    s->down_blocks = static_cast<int>(expert_blocks(job.weights->hidden()));
    first_up_.push_back(first_up_.back() + s->up_blocks);
    jobs_.push_back(std::move(s));
  }
}

shared_expert_jobs::job_state* shared_expert_jobs::job_with_down_left() {
  for (auto& j : jobs_)
    if (j->active.load(std::memory_order_acquire) &&
        j->down_next.load(std::memory_order_relaxed) < j->down_blocks)
      return j.get();
  return nullptr;
}

void shared_expert_jobs::announce() {
  events_.fetch_add(1);
  if (waiters_.load() > 0) events_.notify_all();
}

bool shared_expert_jobs::finish_job(const std::function<void()>& answer) {
  const bool last =
      jobs_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<int>(jobs_.size());
  struct announce_on_exit {  // even if `answer` throws: helpers waiting for this job return
    shared_expert_jobs* jobs;
    ~announce_on_exit() { jobs->announce(); }
  } wake{this};
  if (last && answer) answer();
  return last;
}

bool shared_expert_jobs::help(const std::function<void()>& answer) {
  bool last = false;
  const int total_up = first_up_.back();
  for (;;) {
    // Finish started jobs first: their down blocks, then the next gate/up blocks.
    if (job_state* j = job_with_down_left()) {
      const int first = j->down_next.fetch_add(blocks_per_take, std::memory_order_relaxed);
      if (first >= j->down_blocks) continue;  // another helper took the last ones meanwhile
      const int end = std::min(first + blocks_per_take, j->down_blocks);
      for (int b = first; b < end; ++b) {
        const int64_t r0 = int64_t{b} * expert_block_rows;
        down_rows(j->job, j->gate_up.data(), r0,
                  std::min(r0 + expert_block_rows, j->job.weights->hidden()));
      }
      if (j->down_done.fetch_add(end - first, std::memory_order_acq_rel) + end - first ==
          j->down_blocks)
        last = finish_job(answer) || last;
      continue;
    }
    if (up_next_.load(std::memory_order_relaxed) < total_up) {
      const int first = up_next_.fetch_add(blocks_per_take, std::memory_order_relaxed);
      const int end = std::min(first + blocks_per_take, total_up);
      for (int b = first; b < end;) {  // the take may span the end of one job and the next
        const auto k = static_cast<size_t>(std::upper_bound(first_up_.begin(), first_up_.end(), b) -
                                           first_up_.begin() - 1);
        job_state& j = *jobs_[k];
        const int job_end = std::min(end, first_up_[k + 1]), count = job_end - b;
        for (; b < job_end; ++b) {
          const int64_t r0 = int64_t{b - first_up_[k]} * expert_block_rows;
          gate_up_rows(j.job, j.gate_up.data(), r0,
                       std::min(r0 + expert_block_rows, 2 * j.job.weights->intermediate()));
        }
        if (j.up_done.fetch_add(count, std::memory_order_acq_rel) + count == j.up_blocks) {
          activate(j.job, j.gate_up.data());
          j.active.store(true, std::memory_order_release);
          announce();
        }
      }
      continue;
    }
    // Nothing to take: the blocks left are held by others. Wait for a job to activate (its down
    // blocks) or for all to be done; a sleeping helper gives its core to the ones it waits for.
    const uint32_t seen = events_.load();
    if (done()) return last;
    if (job_with_down_left() != nullptr) continue;
    const auto until = std::chrono::steady_clock::now() + poll_before_sleeping;
    while (events_.load() == seen && std::chrono::steady_clock::now() < until) {
    }
    if (events_.load() == seen) {
      waiters_.fetch_add(1);
      events_.wait(seen);
      waiters_.fetch_sub(1);
    }
  }
}

}  // namespace xmesh::kernels
