#include "kernels/core/thread_pool.hpp"

#include <immintrin.h>
#include <pthread.h>

#include <chrono>

namespace xmesh::kernels {

namespace {
// Spin briefly before sleeping: long enough to catch the next job of a decode step, short enough
// not to steal a shared core from other processes (cluster nodes share the machine's cores).
// Timed, not counted: one pause takes 10 to 140 cycles depending on the CPU.
constexpr auto spin_time = std::chrono::microseconds(50);

// Polls `done` with pauses until it holds (true) or spin_time has passed (false).
template <class Done>
bool spin_until(Done done) {
  const auto until = std::chrono::steady_clock::now() + spin_time;
  while (!done()) {
    for (int i = 0; i < 16; ++i) _mm_pause();
    if (std::chrono::steady_clock::now() >= until) return done();
  }
  return true;
}
}  // namespace

thread_pool::thread_pool(int num_threads) {
  // Nothing to take until the first job.
  next_chunk_.store(num_threads);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

thread_pool::~thread_pool() {
  stop_.store(true);
  generation_.fetch_add(1);
  prewake();
  for (auto& w : workers_) w.join();
}

// A worker late from an earlier job may take a chunk of the current one: it reads the job only
// after taking a chunk (acquire), and the caller changes the job only once every chunk is done.
void thread_pool::run_chunks() {
  const int n = num_threads();
  for (int i; (i = next_chunk_.fetch_add(1, std::memory_order_acq_rel)) < n;) {
    const int64_t begin = count_ * i / n, end = count_ * (i + 1) / n;
    if (begin < end) (*job_)(begin, end);
    if (chunks_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) chunks_done_.notify_all();
  }
}

void thread_pool::parallel_for(int64_t count, const std::function<void(int64_t, int64_t)>& fn) {
  if (count <= 0) return;
  if (workers_.empty() || count == 1) {
    fn(0, count);
    return;
  }
  job_ = &fn;
  count_ = count;
  chunks_done_.store(0, std::memory_order_relaxed);
  next_chunk_.store(0, std::memory_order_release);  // publishes the job to whoever takes a chunk
  generation_.fetch_add(1, std::memory_order_release);
  prewake();
  run_chunks();
  const int n = num_threads();
  spin_until([&] { return chunks_done_.load(std::memory_order_acquire) == n; });
  for (int done; (done = chunks_done_.load(std::memory_order_acquire)) != n;)
    chunks_done_.wait(done);
}

void thread_pool::prewake() {
  resting_.store(false, std::memory_order_relaxed);
  alarm_.fetch_add(1);
  alarm_.notify_all();
}

void thread_pool::rest() { resting_.store(true, std::memory_order_relaxed); }

void thread_pool::worker_loop() {
  pthread_setname_np(pthread_self(), "xmesh.pool");  // for ps, top and perf sched
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    spin_until([&] {
      return (gen = generation_.load(std::memory_order_acquire)) != seen ||
             resting_.load(std::memory_order_relaxed);
    });
    if (gen == seen) {
      // Sleeps until a job or a prewake (which bumps the alarm after any new generation).
      const uint32_t alarm = alarm_.load();
      if (generation_.load() == seen) alarm_.wait(alarm);
      continue;
    }
    seen = gen;
    if (stop_.load()) return;
    run_chunks();
  }
}

}  // namespace xmesh::kernels
