// Helpers every back end shares: the table of in-flight requests and a wakeable command queue.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "transport/transport.hpp"

namespace xmesh::transport {

/// The callback a channel::request caller gave.
using reply_callback = std::function<void(bytes reply, std::string error)>;

/// In-flight requests of one channel, keyed by a transport-level request id. Thread-safe:
/// requests are added by caller threads and completed by the receive thread.
class pending_table {
 public:
  /// Registers `cb` and returns its fresh id; once closed returns 0 and leaves `cb` untouched.
  uint64_t add(reply_callback&& cb) {
    std::lock_guard lock(mutex_);
    if (closed_) return 0;
    uint64_t id = next_id_++;
    table_.emplace(id, std::move(cb));
    return id;
  }
  /// Removes and returns the callback of `id`; empty when unknown (late or duplicate reply).
  reply_callback take(uint64_t id) {
    std::lock_guard lock(mutex_);
    auto it = table_.find(id);
    if (it == table_.end()) return {};
    reply_callback cb = std::move(it->second);
    table_.erase(it);
    return cb;
  }
  /// Completes every pending request with `error`; when `close`, later add() calls fail.
  void fail_all(const std::string& error, bool close) {
    std::unordered_map<uint64_t, reply_callback> failed;
    {
      std::lock_guard lock(mutex_);
      failed.swap(table_);
      if (close) {
        closed_ = true;
        close_reason_ = error;
      }
    }
    // NOTE: callbacks run outside the lock so they may issue new requests.
    for (auto& [id, cb] : failed) cb({}, error);
  }
  /// Why add() fails (the error given to the closing fail_all).
  std::string close_reason() const {
    std::lock_guard lock(mutex_);
    return close_reason_;
  }
  /// Number of requests in flight.
  size_t size() const {
    std::lock_guard lock(mutex_);
    return table_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, reply_callback> table_;
  uint64_t next_id_ = 1;
  bool closed_ = false;
  std::string close_reason_;
};

/// An eventfd a progress thread polls to learn that other threads queued work for it.
class wake_fd {
 public:
  wake_fd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~wake_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  wake_fd(const wake_fd&) = delete;
  wake_fd& operator=(const wake_fd&) = delete;

  /// The fd to poll for POLLIN; -1 when eventfd failed (callers check in their constructor).
  [[nodiscard]] int fd() const { return fd_; }
  /// Makes the fd readable.
  void notify() const {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
  }
  /// Resets the fd after a wakeup.
  void drain() const {
    uint64_t v;
    [[maybe_unused]] auto n = ::read(fd_, &v, sizeof v);
  }

 private:
  int fd_;
};

/// A multi-producer queue of commands for one progress thread, which it wakes via a wake_fd.
template <class Command>
class command_queue {
 public:
  /// Queues `c`; wakes the consumer only when the queue was empty (it drains everything).
  void push(Command c) {
    bool was_empty;
    {
      std::lock_guard lock(mutex_);
      was_empty = items_.empty();
      items_.push_back(std::move(c));
      nonempty_.store(true, std::memory_order_release);
    }
    if (was_empty) wake_.notify();
  }
  /// Takes every queued command (consumer side).
  std::deque<Command> take_all() {
    std::deque<Command> out;
    std::lock_guard lock(mutex_);
    out.swap(items_);
    nonempty_.store(false, std::memory_order_release);
    return out;
  }
  /// A lock-free hint that commands are queued (for a consumer that spins before sleeping).
  [[nodiscard]] bool has_items() const { return nonempty_.load(std::memory_order_acquire); }
  /// The fd to poll.
  [[nodiscard]] int fd() const { return wake_.fd(); }
  /// Resets the wakeup after polling.
  void drain_wakeups() const { wake_.drain(); }

 private:
  std::mutex mutex_;
  std::deque<Command> items_;
  std::atomic<bool> nonempty_{false};
  wake_fd wake_;
};

/// Sets a handshake's outcome once; a later one (a late pong after a timeout) is ignored.
inline void settle(std::promise<std::string>& p, std::string outcome) {
  try {
    p.set_value(std::move(outcome));
  } catch (const std::future_error&) {
  }
}

/// Waits for a new channel's handshake (its outcome: empty, or an error). On a timeout or an
/// error, fails the channel's pending requests, closes it with `close()` and throws
/// "cannot reach ADDRESS within N ms[: error]".
template <class Close>
void await_handshake(std::future<std::string>& outcome, pending_table& pending,
                     const std::string& address, int timeout_ms, Close close) {
  const std::string prefix =
      "cannot reach " + address + " within " + std::to_string(timeout_ms) + " ms";
  if (outcome.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready) {
    pending.fail_all(prefix, true);
    close();
    throw std::runtime_error(prefix);
  }
  if (auto err = outcome.get(); !err.empty()) {
    close();
    throw std::runtime_error(prefix + ": " + err);
  }
}

}  // namespace xmesh::transport
