// A fixed pool of workers for fork-join loops on the token path.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace xmesh::kernels {

/// Runs `fn(begin, end)` over a static split of [0, count) across the caller and its workers.
/// Workers spin briefly between jobs (decode issues thousands of small jobs per second), then
/// sleep. The split depends only on `count` and `num_threads()`, never on timing; which thread
/// runs a chunk does: each takes the next chunk left, the caller included, so a worker that the
/// scheduler keeps off its core (another process's thread on it) costs the job nothing but its
/// chunk running on the caller.
class thread_pool {
 public:
  explicit thread_pool(int num_threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  [[nodiscard]] int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  /// Calls `fn(begin, end)` for contiguous chunks covering [0, count); returns when all are done.
  void parallel_for(int64_t count, const std::function<void(int64_t, int64_t)>& fn);

  /// Any thread: wakes sleeping workers to poll for a job for a while, as when one is given.
  /// For a caller about to resume after a long wait: its workers then wake while it does,
  /// instead of only when its first job arrives (each wake-up costs tens of microseconds on VMs).
  void prewake();

  /// Any thread: workers still spinning for a job go to sleep now. For a caller about to wait
  /// long for others (an expert batch out to other nodes), whose spinning workers would take the
  /// cores those others compute on.
  void rest();

 private:
  void worker_loop();
  void run_chunks();  // takes chunks until none is left

  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t count_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint32_t> alarm_{0};  // sleeping workers wait on it: bumped per job and prewake
  std::atomic<int> next_chunk_{0};  // the job's next chunk to take
  std::atomic<int> chunks_done_{0};
  std::atomic<bool> resting_{false};  // rest() until the next job or prewake
  std::atomic<bool> stop_{false};
};

}  // namespace xmesh::kernels
