// The EPLB port reproduces the EPLB README example, and the planner matches or beats it there.
#include "bench/placement/eplb.hpp"

#include <gtest/gtest.h>

#include "placement/planner.hpp"
#include "tests/unit/placement/test_support.hpp"

namespace xmesh::placement {
namespace {

using testing::equal_hosts;
using testing::expect_valid;
using testing::layer_balance;

const load_matrix readme_load = {{90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
                                 {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};

plan_options readme_options(bool hierarchical) {
  plan_options o;
  o.num_replicas = 16;
  o.hosts = equal_hosts(8, 2);
  if (hierarchical) o.num_groups = 4, o.num_nodes = 2;
  return o;
}

TEST(EplbPort, ReproducesReadmeExample) {
  auto r = bench::eplb::rebalance_experts(readme_load, 16, 4, 2, 8);
  EXPECT_EQ(r.phy2log[0],
            (std::vector<int32_t>{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1}));
  EXPECT_EQ(r.phy2log[1], (std::vector<int32_t>{7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}));
  auto p = bench::eplb::to_placement(r, 8);
  auto o = readme_options(true);
  auto t0 = host_times(p.layers[0], readme_load[0], o.hosts);
  EXPECT_EQ(t0, (std::vector<double>{121.5, 86.5, 125, 113, 147.5, 131.5, 156, 152}));
  auto t1 = host_times(p.layers[1], readme_load[1], o.hosts);
  EXPECT_EQ(t1, (std::vector<double>{173, 179.5, 120.5, 172, 123, 152, 118.5, 117.5}));
  EXPECT_NEAR(balancedness(t0), 0.828, 5e-4);
  EXPECT_NEAR(balancedness(t1), 0.805, 5e-4);
}

TEST(EplbPort, GlobalPolicyOnReadmeExample) {
  // G % N != 0 selects the global policy; the notes' port gives 0.932 and 0.840.
  auto p = bench::eplb::to_placement(bench::eplb::rebalance_experts(readme_load, 16, 1, 2, 8), 8);
  auto b = layer_balance(p, readme_load, readme_options(false));
  EXPECT_NEAR(b[0], 0.932, 5e-4);
  EXPECT_NEAR(b[1], 0.840, 5e-4);
}

// Per-layer balancedness of the planner's plan and of EPLB's on the README example.
std::pair<std::vector<double>, std::vector<double>> planner_and_eplb(bool hierarchical) {
  auto o = readme_options(hierarchical);
  auto result = plan(readme_load, o);
  expect_valid(result.placement, readme_load, o);
  auto eplb = bench::eplb::rebalance_experts(readme_load, 16, hierarchical ? 4 : 1,
                                             hierarchical ? 2 : 1, 8);
  return {layer_balance(result.placement, readme_load, o),
          layer_balance(bench::eplb::to_placement(eplb, 8), readme_load, o)};
}

TEST(Planner, MatchesOrBeatsEplbOnReadmeExampleHierarchical) {
  auto [ours, eplb] = planner_and_eplb(true);
  // EPLB is optimal here once groups sit in nodes (its node split and per-node packing cannot be
  // bettered), so the planner can only tie.
  for (size_t l = 0; l < ours.size(); ++l) EXPECT_GE(ours[l], eplb[l] - 1e-12) << "layer " << l;
}

TEST(Planner, MatchesOrBeatsEplbOnReadmeExampleGlobal) {
  auto [ours, eplb] = planner_and_eplb(false);
  // Layer 1: EPLB needs expert 1 twice on one GPU for its 0.932; the planner finds 0.949 without.
  EXPECT_GT(ours[0], eplb[0] + 0.01);
  EXPECT_GE(ours[1], eplb[1] - 1e-12);
}

TEST(EplbPort, CanBreakAntiAffinityWherePlannerDoesNot) {
  // The notes: under the global policy EPLB puts expert 8 of layer 2 twice on one GPU.
  auto r = bench::eplb::rebalance_experts(readme_load, 16, 1, 1, 8);
  bool twice = false;
  for (size_t s = 0; s + 1 < 16; s += 2) twice |= r.phy2log[1][s] == r.phy2log[1][s + 1];
  EXPECT_TRUE(twice);
  auto o = readme_options(false);
  expect_valid(plan(readme_load, o).placement, readme_load, o);
}

}  // namespace
}  // namespace xmesh::placement
