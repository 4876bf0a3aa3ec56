// Shared helpers for the placement tests: load generators and the invariants every plan must keep.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "placement/planner.hpp"

namespace xmesh::placement::testing {

/// Zipf(s) loads with the popularity order shuffled per layer, `tokens` per layer in total.
inline load_matrix zipf_load(int32_t layers, int32_t experts, double s, uint32_t seed,
                             double tokens = 100000.0) {
  std::mt19937 rng(seed);
  load_matrix load;
  for (int32_t l = 0; l < layers; ++l) {
    std::vector<double> w(static_cast<size_t>(experts));
    double sum = 0.0;
    for (int32_t r = 0; r < experts; ++r)
      sum += w[static_cast<size_t>(r)] = 1.0 / std::pow(r + 1, s);
    for (auto& x : w) x = std::round(x / sum * tokens);
    std::shuffle(w.begin(), w.end(), rng);
    load.push_back(std::move(w));
  }
  return load;
}

/// `hosts` hosts with `slots` each and speed 1.
inline std::vector<host_spec> equal_hosts(int32_t hosts, int32_t slots) {
  return std::vector<host_spec>(static_cast<size_t>(hosts), host_spec{slots, 1.0});
}

/// Checks every hard rule: R slots per layer, slot limits, every expert placed, no expert twice
/// on a host, and in hierarchical mode each group within one node.
inline void expect_valid(const placement& p, const load_matrix& load, const plan_options& o) {
  const auto experts = static_cast<int32_t>(load[0].size());
  const auto hosts = static_cast<int32_t>(o.hosts.size());
  ASSERT_EQ(p.layers.size(), load.size());
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const auto& layer = p.layers[l];
    ASSERT_EQ(layer.expert_of_slot.size(), static_cast<size_t>(o.num_replicas)) << "layer " << l;
    ASSERT_EQ(layer.host_of_slot.size(), static_cast<size_t>(o.num_replicas)) << "layer " << l;
    std::vector<int32_t> used(static_cast<size_t>(hosts), 0),
        count(static_cast<size_t>(experts), 0);
    std::vector<uint8_t> has(static_cast<size_t>(hosts * experts), 0);
    std::vector<int32_t> node_of_group(static_cast<size_t>(std::max(o.num_groups, 1)), -1);
    for (size_t s = 0; s < layer.expert_of_slot.size(); ++s) {
      int32_t e = layer.expert_of_slot[s], h = layer.host_of_slot[s];
      ASSERT_TRUE(e >= 0 && e < experts && h >= 0 && h < hosts) << "layer " << l << " slot " << s;
      EXPECT_EQ(has[static_cast<size_t>(h * experts + e)], 0)
          << "layer " << l << ": expert " << e << " twice on host " << h;
      has[static_cast<size_t>(h * experts + e)] = 1;
      ++used[static_cast<size_t>(h)];
      ++count[static_cast<size_t>(e)];
      if (o.num_groups > 0) {
        int32_t group = e / (experts / o.num_groups);
        int32_t node = h / (hosts / o.num_nodes);
        auto& n = node_of_group[static_cast<size_t>(group)];
        EXPECT_TRUE(n < 0 || n == node) << "layer " << l << ": group " << group << " spans nodes";
        n = node;
      }
    }
    for (int32_t h = 0; h < hosts; ++h)
      EXPECT_LE(used[static_cast<size_t>(h)], o.hosts[static_cast<size_t>(h)].slots)
          << "layer " << l << " host " << h;
    for (int32_t e = 0; e < experts; ++e)
      EXPECT_GE(count[static_cast<size_t>(e)], 1) << "layer " << l << " expert " << e;
  }
}

/// The two placements are identical, slot by slot.
inline void expect_same(const placement& a, const placement& b) {
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_EQ(a.layers[l].expert_of_slot, b.layers[l].expert_of_slot) << "layer " << l;
    EXPECT_EQ(a.layers[l].host_of_slot, b.layers[l].host_of_slot) << "layer " << l;
  }
}

/// Per-layer balancedness of a placement under the options' host speeds.
inline std::vector<double> layer_balance(const placement& p, const load_matrix& load,
                                         const plan_options& o) {
  std::vector<double> out;
  for (size_t l = 0; l < load.size(); ++l)
    out.push_back(balancedness(host_times(p.layers[l], load[l], o.hosts)));
  return out;
}

}  // namespace xmesh::placement::testing
