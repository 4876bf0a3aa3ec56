// Planner behaviour: balance against EPLB, speeds, slot limits, anti-affinity, moves, determinism.
#include "placement/planner.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "bench/placement/eplb.hpp"
#include "tests/unit/placement/test_support.hpp"

namespace xmesh::placement {
namespace {

using testing::equal_hosts;
using testing::expect_same;
using testing::expect_valid;
using testing::layer_balance;
using testing::zipf_load;

plan_options options(int32_t hosts, int32_t replicas) {
  plan_options o;
  o.num_replicas = replicas;
  o.hosts = equal_hosts(hosts, replicas / hosts);
  return o;
}

// Per layer, the planner is at least as balanced as EPLB (global policy) on the same input.
void expect_at_least_eplb(const load_matrix& load, const plan_options& o, const placement& ours) {
  auto hosts = static_cast<int32_t>(o.hosts.size());
  auto eplb = bench::eplb::to_placement(
      bench::eplb::rebalance_experts(load, o.num_replicas, 1, 1, hosts), hosts);
  auto a = layer_balance(ours, load, o), b = layer_balance(eplb, load, o);
  for (size_t l = 0; l < a.size(); ++l) EXPECT_GE(a[l], b[l] - 1e-12) << "layer " << l;
}

TEST(Planner, UniformLoadIsPerfectlyBalanced) {
  load_matrix load(3, std::vector<double>(32, 100.0));
  auto o = options(8, 32);
  auto r = plan(load, o);
  expect_valid(r.placement, load, o);
  for (double b : layer_balance(r.placement, load, o)) EXPECT_DOUBLE_EQ(b, 1.0);
}

TEST(Planner, UniformLoadWithRedundantSlots) {
  load_matrix load(2, std::vector<double>(24, 100.0));
  auto o = options(8, 32);
  auto r = plan(load, o);
  expect_valid(r.placement, load, o);
  expect_at_least_eplb(load, o, r.placement);
}

TEST(Planner, SkewedZipfBeatsEplbOnAverage) {
  for (double s : {0.8, 1.0, 1.2}) {
    auto load = zipf_load(4, 64, s, 7);
    auto o = options(16, 80);
    auto r = plan(load, o);
    expect_valid(r.placement, load, o);
    expect_at_least_eplb(load, o, r.placement);
    auto eplb = bench::eplb::to_placement(bench::eplb::rebalance_experts(load, 80, 1, 1, 16), 16);
    EXPECT_GT(r.report.balancedness_after, evaluate(load, o, eplb).balancedness_after) << s;
  }
}

TEST(Planner, SingleHotExpertGetsAReplicaOnEveryHost) {
  load_matrix load = {std::vector<double>(16, 0.0)};
  load[0][5] = 1e6;
  auto o = options(4, 20);
  auto r = plan(load, o);
  expect_valid(r.placement, load, o);
  EXPECT_EQ(replica_counts(r.placement.layers[0], 16)[5], 4);
  EXPECT_DOUBLE_EQ(r.report.layers[0].balancedness_after, 1.0);
}

TEST(Planner, AdversarialLoads) {
  // All idle; a few giants among dwarfs; ties everywhere (EPLB's tie-breaking trap).
  load_matrix load = {std::vector<double>(24, 0.0), std::vector<double>(24, 1.0),
                      std::vector<double>(24, 7.0)};
  load[1][0] = load[1][1] = load[1][2] = 5000.0;
  for (size_t e = 0; e < 24; e += 3) load[2][e] = 3.0;
  auto o = options(6, 30);
  auto r = plan(load, o);
  expect_valid(r.placement, load, o);
  expect_at_least_eplb(load, o, r.placement);
  EXPECT_DOUBLE_EQ(r.report.layers[0].balancedness_after, 1.0);
}

TEST(Planner, HeterogeneousSpeedsBeatEplbStrictly) {
  auto load = zipf_load(4, 64, 1.0, 11);
  auto o = options(8, 80);
  for (size_t h = 0; h < o.hosts.size(); ++h) o.hosts[h].speed = h < 4 ? 1.0 : 3.0;
  auto r = plan(load, o);
  expect_valid(r.placement, load, o);
  auto eplb = bench::eplb::to_placement(bench::eplb::rebalance_experts(load, 80, 1, 1, 8), 8);
  auto a = layer_balance(r.placement, load, o), b = layer_balance(eplb, load, o);
  for (size_t l = 0; l < a.size(); ++l) EXPECT_GT(a[l], b[l]) << "layer " << l;
  EXPECT_GT(r.report.balancedness_after, 0.9);
}

TEST(Planner, RespectsUnevenSlotLimits) {
  auto load = zipf_load(3, 20, 1.1, 3);
  plan_options o;
  o.num_replicas = 27;  // fewer than the 30 slots on offer, and not a multiple of the host count
  o.hosts = {{10, 1.0}, {8, 1.0}, {6, 2.0}, {4, 1.0}, {2, 0.5}};
  auto r = plan(load, o);
  expect_valid(r.placement, load, o);
}

TEST(Planner, HierarchicalKeepsGroupsWithinNodes) {
  auto load = zipf_load(3, 64, 1.0, 5);
  auto o = options(16, 80);
  o.num_groups = 8;
  o.num_nodes = 4;
  auto r = plan(load, o);
  expect_valid(r.placement, load, o);
  auto eplb = bench::eplb::to_placement(bench::eplb::rebalance_experts(load, 80, 8, 4, 16), 16);
  auto a = layer_balance(r.placement, load, o), b = layer_balance(eplb, load, o);
  for (size_t l = 0; l < a.size(); ++l) EXPECT_GE(a[l], b[l] - 1e-12) << "layer " << l;
}

TEST(Planner, SameLoadTwiceMovesNothing) {
  auto load = zipf_load(3, 48, 1.0, 9);
  auto o = options(8, 56);
  auto first = plan(load, o);
  auto second = plan(load, o, &first.placement);
  EXPECT_EQ(second.report.moved_replicas, 0);
  EXPECT_EQ(second.report.bytes_moved, 0.0);
  expect_same(second.placement, first.placement);
}

TEST(Planner, SmallLoadChangeMovesLittle) {
  auto load = zipf_load(3, 48, 1.0, 9);
  auto o = options(8, 56);
  auto first = plan(load, o);
  auto drifted = load;
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> noise(0.98, 1.02);
  for (auto& layer : drifted)
    for (auto& x : layer) x = std::round(x * noise(rng));
  auto second = plan(drifted, o, &first.placement);
  expect_valid(second.placement, drifted, o);
  EXPECT_LE(second.report.moved_replicas, 3 * 56 / 10);  // under a tenth of the slots
  EXPECT_GE(second.report.balancedness_after, second.report.balancedness_before);
}

TEST(Planner, LargeLoadChangeMovesAndGains) {
  auto load = zipf_load(2, 48, 1.2, 9);
  auto o = options(8, 56);
  auto first = plan(load, o);
  auto shifted = zipf_load(2, 48, 1.2, 10);  // a different set of hot experts
  auto second = plan(shifted, o, &first.placement);
  expect_valid(second.placement, shifted, o);
  EXPECT_GT(second.report.moved_replicas, 0);
  EXPECT_DOUBLE_EQ(second.report.bytes_moved, static_cast<double>(second.report.moved_replicas));
  EXPECT_GT(second.report.balancedness_after, second.report.balancedness_before + 0.05);
}

TEST(Planner, HigherMoveCostMovesLess) {
  auto load = zipf_load(2, 48, 1.0, 9);
  auto o = options(8, 56);
  auto first = plan(load, o);
  auto shifted = zipf_load(2, 48, 1.0, 12);
  o.move_cost = 0.0;
  auto cheap = plan(shifted, o, &first.placement);
  o.move_cost = 0.2;
  auto dear = plan(shifted, o, &first.placement);
  EXPECT_LE(dear.report.moved_replicas, cheap.report.moved_replicas);
}

TEST(Planner, IsDeterministic) {
  auto load = zipf_load(3, 64, 0.9, 21);
  auto o = options(12, 72);
  o.hosts[3].speed = 2.5;
  expect_same(plan(load, o).placement, plan(load, o).placement);
}

TEST(Planner, RejectsBadInput) {
  auto load = zipf_load(2, 16, 1.0, 1);
  auto o = options(4, 16);
  EXPECT_THROW((void)plan({}, o), std::invalid_argument);
  auto ragged = load;
  ragged[1].pop_back();
  EXPECT_THROW((void)plan(ragged, o), std::invalid_argument);
  auto negative = load;
  negative[0][3] = -1;
  EXPECT_THROW((void)plan(negative, o), std::invalid_argument);
  auto few = options(4, 12);  // fewer slots than experts
  EXPECT_THROW((void)plan(load, few), std::invalid_argument);
  auto unreachable = o;
  unreachable.hosts = equal_hosts(4, 3);  // 12 slots for R = 16
  EXPECT_THROW((void)plan(load, unreachable), std::invalid_argument);
  auto slow = o;
  slow.hosts[0].speed = 0;
  EXPECT_THROW((void)plan(load, slow), std::invalid_argument);
  auto groups = o;
  groups.num_groups = 3, groups.num_nodes = 1;  // 3 does not divide 16 experts
  EXPECT_THROW((void)plan(load, groups), std::invalid_argument);
  placement bad_current = plan(load, o).placement;
  bad_current.layers[0].host_of_slot.pop_back();
  EXPECT_THROW((void)plan(load, o, &bad_current), std::invalid_argument);
}

}  // namespace
}  // namespace xmesh::placement
