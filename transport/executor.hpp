// A single thread running posted tasks in order: the "receive thread" of the local back end.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace xmesh::transport {

/// Runs posted tasks on its own thread, in order; tasks still queued at stop() are dropped.
class executor {
 public:
  executor() : thread_([this] { run(); }) {}
  ~executor() { stop(); }
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  /// Queues `task`; returns false (and drops it) once stopped, so callers can run it inline.
  bool post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return false;
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
  }
  /// Stops and joins the thread (idempotent; must not be called from the thread itself).
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (!thread_.joinable()) return;
    // NOTE: a task that stops its own executor cannot join itself; it lets the thread finish.
    if (on_thread()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
  /// True when called on this executor's thread.
  [[nodiscard]] bool on_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (stopping_) return;
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // destroy captures outside the lock
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;  // NOTE: last member, so it starts after the others exist
};

}  // namespace xmesh::transport
