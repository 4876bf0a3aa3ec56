// Counts per key over a sliding window of whole seconds: a ring of one-second buckets, so old
// traffic leaves the count instead of weighing on it forever.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace xmesh::actors {

/// Thread-safe: add() from any thread, totals() from another. Times are whole seconds of any
/// monotonic clock (passed in, so tests control them).
class load_window {
 public:
  load_window(size_t num_keys, int64_t window_s)
      : num_keys_(num_keys),
        buckets_(static_cast<size_t>(window_s)),
        counts_(num_keys * window_s) {}

  /// Counts `n` for `key` at second `now_s`.
  void add(size_t key, uint64_t n, int64_t now_s) {
    size_t b = advance(now_s);
    counts_[b * num_keys_ + key].fetch_add(n, std::memory_order_relaxed);
  }

  /// Per key, the counts of the last `window_s` seconds up to `now_s`.
  [[nodiscard]] std::vector<double> totals(int64_t now_s) {
    advance(now_s);
    std::vector<double> out(num_keys_, 0.0);
    for (size_t b = 0; b < buckets_; ++b)
      for (size_t k = 0; k < num_keys_; ++k)
        out[k] += static_cast<double>(counts_[b * num_keys_ + k].load(std::memory_order_relaxed));
    return out;
  }

 private:
  // Clears the buckets of seconds that passed since the last call; returns now's bucket.
  size_t advance(int64_t now_s) {
    int64_t last = second_.load(std::memory_order_acquire);
    if (now_s > last) {
      std::lock_guard lock(mutex_);
      last = second_.load(std::memory_order_relaxed);
      for (int64_t s = last + 1; s <= now_s && s <= last + static_cast<int64_t>(buckets_); ++s) {
        size_t b = static_cast<size_t>(s) % buckets_;
        for (size_t k = 0; k < num_keys_; ++k) counts_[b * num_keys_ + k].store(0);
      }
      if (now_s > last) second_.store(now_s, std::memory_order_release);
    }
    return static_cast<size_t>(now_s) % buckets_;
  }

  size_t num_keys_, buckets_;
  std::vector<std::atomic<uint64_t>> counts_;  // bucket * num_keys + key
  std::atomic<int64_t> second_{0};
  std::mutex mutex_;
};

}  // namespace xmesh::actors
