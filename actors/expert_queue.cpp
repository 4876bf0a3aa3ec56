#include "actors/expert_queue.hpp"

#include <cstring>

#include "actors/expert_host.hpp"

namespace xmesh::actors {

// Counters first: the host may be gone once the requester has its answer.
void pending_frame::finish() {
  if (failed) return;
  served->fetch_add(1);
  if (served_metric) served_metric->Increment();
  service_ns->fetch_add(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - arrived).count()));
  reply->send(reply_frame->seal());
}

void pending_frame::fail(const std::string& why) {
  if (failed.exchange(true)) return;
  auto h = view.header;
  h.flags = static_cast<uint32_t>(host_errc::expert_failed);
  reply->send(transport::encode_error_frame(h, why));
}

bool frame_run::reads_consecutive_rows() const {
  const auto& rows = frame->view.row_of_pair;
  for (uint32_t i = 1; i < count; ++i)
    if (rows[first + i] != rows[first] + static_cast<int32_t>(i)) return false;
  return true;
}

kernels::expert_job frame_run::job(const kernels::expert_weights& w) const {
  return {&w, frame->view.pair_row(first).data(), count,
          frame->reply_frame->rows() + int64_t{first} * w.hidden()};
}

bool expert_queue::push(frame_run r) {
  std::lock_guard lock(mutex);
  items.push_back(std::move(r));
  return !std::exchange(scheduled, true);
}

void expert_queue::run() {
  kernels::enter_compute_thread(role);
  for (;;) {
    std::vector<frame_run> batch;
    {
      std::lock_guard lock(mutex);
      if (items.empty()) {
        scheduled = false;
        return;
      }
      batch.swap(items);
    }
    try {
      compute(batch);
    } catch (const std::exception& e) {  // e.g. out of memory: fail these frames, keep serving
      for (auto& r : batch) r.frame->fail(std::string("expert failed: ") + e.what());
    }
  }
}

// Shared frames are helped with; of the others, runs a head marked as misses of its sequence's
// cache compute with the store's low-precision copy (the full one starts loading first), the
// rest with the full expert.
void expert_queue::compute(std::vector<frame_run>& batch) {
  std::vector<const frame_run*> low, full;
  for (const auto& r : batch) {
    if (r.frame->shared)
      help(*r.frame);
    else
      (r.low ? low : full).push_back(&r);
  }
  if (low.empty() && full.empty()) return;
  const auto start = clock_type::now();
  int64_t n = 0;
  if (!low.empty()) {
    low_store->warm(layer, expert);
    n += run_with(*low_store->low_precision(layer, expert), low);
    low_store->count_fallbacks(layer, n);
  }
  if (!full.empty()) {
    std::optional<node_store::lease> held;  // a stored expert stays resident while it computes
    if (store) held.emplace(store->acquire(layer, expert));
    n += run_with(held ? held->weights() : resident->weights, full);
  }
  record(clock_type::now() - start, n);
  for (auto& r : batch)
    if (!r.frame->shared && r.frame->remaining.fetch_sub(1) == 1) r.frame->finish();
}

// Computes blocks of a shared frame's experts, this replica's or others', until all are done;
// answers the frame when this thread finished the last block, counting first as finish() does.
// (Time counts waits for others' last blocks, a block's compute at most unless the scheduler
// holds them up; the frame's rows count once, with the last block.)
void expert_queue::help(pending_frame& f) {
  const auto start = clock_type::now();
  const bool last = f.shared->help([&] {
    record(clock_type::now() - start, f.view.header.num_pairs);
    f.finish();
  });
  if (!last) record(clock_type::now() - start, 0);
}

void expert_queue::record(clock_type::duration took, int64_t computed_rows) {
  rows->fetch_add(static_cast<uint64_t>(computed_rows));
  compute_ns->fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count());
  if (metrics) {
    metrics->expert_rows().Increment(static_cast<double>(computed_rows));
    metrics->expert_compute().Observe(std::chrono::duration<double>(took).count());
  }
}

// One run whose pairs read consecutive rows computes straight from the request frame into the
// reply frame (a decode step: one row per run); otherwise the rows are gathered into one batch
// (dynamic batching across frames) and the outputs scattered back. Returns the rows.
int64_t expert_queue::run_with(const kernels::expert_weights& w,
                               const std::vector<const frame_run*>& runs) {
  const int64_t hidden = w.hidden();
  int64_t n = 0;
  for (const auto* r : runs) n += r->count;
  if (runs.size() == 1 && runs.front()->reads_consecutive_rows()) {
    const auto job = runs.front()->job(w);
    kernels::run_experts({&job, 1}, pool);
    return n;
  }
  std::vector<float> x(n * hidden), y(n * hidden);
  int64_t at = 0;
  for (const auto* r : runs)
    for (uint32_t i = 0; i < r->count; ++i)
      std::memcpy(x.data() + (at++) * hidden, r->frame->view.pair_row(r->first + i).data(),
                  sizeof(float) * hidden);
  kernels::expert_job job{&w, x.data(), n, y.data()};
  kernels::run_experts({&job, 1}, pool);
  at = 0;
  for (const auto* r : runs) {
    std::memcpy(r->frame->reply_frame->rows() + int64_t{r->first} * hidden, y.data() + at * hidden,
                sizeof(float) * r->count * hidden);
    at += r->count;
  }
  return n;
}

bool share_if_decode(pending_frame& frame, const std::vector<std::pair<int32_t, frame_run>>& runs,
                     std::span<const std::shared_ptr<expert_queue>> layer_queues) {
  std::vector<kernels::expert_job> jobs;
  for (const auto& [e, r] : runs) {
    const auto& q = layer_queues[e];
    if (r.low || !q->resident || !r.reads_consecutive_rows()) return false;
    jobs.push_back(r.job(q->resident->weights));
  }
  for (const auto& [e, r] : runs) frame.shared_weights.push_back(layer_queues[e]->resident);
  frame.shared = std::make_unique<kernels::shared_expert_jobs>(jobs);
  return true;
}

}  // namespace xmesh::actors
