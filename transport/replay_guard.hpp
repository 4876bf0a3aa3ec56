// The receiver's guard that drops a sealed message it has opened before (a captured message sent
// again), as IPsec's anti-replay window does.
#pragma once

#include <bitset>
#include <cstdint>
#include <mutex>
#include <vector>

namespace xmesh::transport {

/// Admits each (sender session, counter) once. Per session it keeps the highest counter seen and
/// which of the `window` counters below it came (a sender's messages arrive out of order only as
/// far as it has messages in flight); an older counter is refused. It keeps the sessions last
/// used, `sessions` at most: a session it forgot starts afresh.
class replay_guard {
 public:
  // A sender counts every message it seals, to any receiver: a message may be overtaken by many
  // later ones sealed meanwhile (sessions, queues), so the window is wide (8 KiB per session).
  static constexpr uint32_t window = 1u << 16;
  static constexpr size_t sessions = 64;

  /// True the first time; false for a counter seen before or older than the window.
  [[nodiscard]] bool admit(uint64_t key, uint32_t counter) {
    std::lock_guard lock(mutex_);
    state* s = find(key);
    if (s->used == 0) {  // new (or forgotten) session
      s->highest = counter;
      s->seen.reset();
    } else if (counter > s->highest) {
      const uint64_t ahead = counter - s->highest;
      if (ahead >= window) {
        s->seen.reset();
      } else {
        for (uint64_t c = s->highest + 1; c < counter; ++c) s->seen.reset(c % window);
      }
      s->highest = counter;
    } else if (s->highest - counter >= window || s->seen.test(counter % window)) {
      s->used = ++clock_;
      return false;
    }
    s->seen.set(counter % window);
    s->used = ++clock_;
    return true;
  }

 private:
  struct state {
    uint64_t key = 0;
    uint64_t used = 0;  // 0: never
    uint32_t highest = 0;
    std::bitset<window> seen;
  };

  // The session's state; a new one takes the least recently used slot once all are taken.
  state* find(uint64_t key) {
    state* oldest = nullptr;
    for (auto& s : states_) {
      if (s.key == key) return &s;
      if (!oldest || s.used < oldest->used) oldest = &s;
    }
    if (states_.size() < sessions) oldest = &states_.emplace_back();
    *oldest = state{};
    oldest->key = key;
    return oldest;
  }

  std::mutex mutex_;
  std::vector<state> states_;
  uint64_t clock_ = 0;
};

}  // namespace xmesh::transport
