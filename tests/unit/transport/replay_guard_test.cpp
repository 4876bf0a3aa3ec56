#include "transport/replay_guard.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

namespace xmesh::transport {
namespace {

// A sender's session as tests name it: a sender and its restart count.
uint64_t session(uint64_t sender, uint64_t start) { return (sender << 32) | start; }

TEST(ReplayGuard, AdmitsEachMessageOnceInAnyOrderWithinTheWindow) {
  replay_guard g;
  std::vector<uint32_t> counters(3000);
  std::iota(counters.begin(), counters.end(), 1);
  // Out of order as far as a sender has messages in flight: shuffled in blocks of 100.
  std::mt19937 rng(3);
  for (size_t i = 0; i < counters.size(); i += 100)
    std::shuffle(counters.begin() + i, counters.begin() + i + 100, rng);
  for (uint32_t c : counters) EXPECT_TRUE(g.admit(session(2, 77), c)) << c;
  for (uint32_t c : {1u, 1500u, 2999u, 3000u})  // every one of them, sent again
    EXPECT_FALSE(g.admit(session(2, 77), c)) << c;
}

TEST(ReplayGuard, RefusesWhatIsOlderThanTheWindow) {
  replay_guard g;
  EXPECT_TRUE(g.admit(session(0, 1), 10));
  EXPECT_TRUE(g.admit(session(0, 1), 10 + replay_guard::window));
  EXPECT_FALSE(g.admit(session(0, 1), 9));  // never seen, but beyond the window
  EXPECT_TRUE(g.admit(session(0, 1), 11));  // the oldest the window still knows
  EXPECT_FALSE(g.admit(session(0, 1), 11));
}

TEST(ReplayGuard, SendersAndSessionsKeepTheirOwnWindows) {
  replay_guard g;
  EXPECT_TRUE(g.admit(session(1, 5), 100));
  EXPECT_TRUE(g.admit(session(2, 5), 100));   // another sender
  EXPECT_TRUE(g.admit(session(1, 6), 1));     // the sender restarted: a new session
  EXPECT_FALSE(g.admit(session(1, 5), 100));  // the old session's message is still known
  EXPECT_FALSE(g.admit(session(1, 6), 1));
}

TEST(ReplayGuard, KeepsABoundedNumberOfSessions) {
  replay_guard g;
  for (uint16_t s = 0; s < replay_guard::sessions; ++s) EXPECT_TRUE(g.admit(session(0, s), 1));
  EXPECT_FALSE(g.admit(session(0, 0), 1));    // all still known
  EXPECT_TRUE(g.admit(session(0, 1000), 1));  // one more takes the least recently used...
  EXPECT_TRUE(g.admit(session(0, 1), 1));     // ... session 1's slot: it starts afresh
}

}  // namespace
}  // namespace xmesh::transport
