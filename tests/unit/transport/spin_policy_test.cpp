#include "transport/spin_policy.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

namespace xmesh::transport {
namespace {

using std::chrono::microseconds;

TEST(SpinPolicy, PollsWhileEventsComeSoonerThanTheBudget) {
  spin_policy p(microseconds(100));
  EXPECT_EQ(p.spin_for(), microseconds(100));  // nothing seen yet: poll
  for (int i = 0; i < 50; ++i) p.record_gap(microseconds(15));
  EXPECT_EQ(p.spin_for(), microseconds(100));
}

TEST(SpinPolicy, OneLongPauseKeepsPollingARunOfThemStopsIt) {
  spin_policy p(microseconds(100));
  for (int i = 0; i < 50; ++i) p.record_gap(microseconds(10));
  p.record_gap(std::chrono::seconds(5));
  EXPECT_EQ(p.spin_for(), microseconds(100));
  p.record_gap(microseconds(900));
  p.record_gap(microseconds(900));
  EXPECT_EQ(p.spin_for(), microseconds(0));  // e.g. a head waiting on experts' compute: sleep
}

TEST(SpinPolicy, ResumesPollingAfterARunOfShortGaps) {
  spin_policy p(microseconds(100));
  for (int i = 0; i < 20; ++i) p.record_gap(std::chrono::milliseconds(1));
  ASSERT_EQ(p.spin_for(), microseconds(0));
  int events = 0;
  // Gaps measured while asleep include the wake-up (~40 us here): still below the budget.
  while (p.spin_for() == microseconds(0) && events < 100) {
    p.record_gap(microseconds(45));
    ++events;
  }
  EXPECT_EQ(p.spin_for(), microseconds(100));
  EXPECT_LE(events, 8);  // the long-gap history (capped at 3x the budget) decays within a few
}

TEST(SpinPolicy, ZeroBudgetNeverPolls) {
  spin_policy p(microseconds(0));
  EXPECT_EQ(p.spin_for(), microseconds(0));
  p.record_gap(microseconds(0));
  EXPECT_EQ(p.spin_for(), microseconds(0));
}

TEST(SpinPolicy, EnvironmentOverridesTheDefault) {
  ::setenv("XMESH_TEST_SPIN_US", "7", 1);
  EXPECT_EQ(spin_policy::from_env("XMESH_TEST_SPIN_US", 100).budget(), microseconds(7));
  ::setenv("XMESH_TEST_SPIN_US", "-3", 1);
  EXPECT_EQ(spin_policy::from_env("XMESH_TEST_SPIN_US", 100).budget(), microseconds(0));
  ::unsetenv("XMESH_TEST_SPIN_US");
  EXPECT_EQ(spin_policy::from_env("XMESH_TEST_SPIN_US", 100).budget(), microseconds(100));
}

}  // namespace
}  // namespace xmesh::transport
