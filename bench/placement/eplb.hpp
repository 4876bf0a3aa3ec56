// A C++ port of DeepSeek's EPLB (deepseek-ai/EPLB eplb.py @ d52c72d), written from its
// description, used as the baseline the placement planner must match or beat.
#pragma once

#include <cstdint>
#include <vector>

#include "placement/placement.hpp"

namespace xmesh::bench::eplb {

/// EPLB's output: the logical expert of every physical slot, and replica counts, per layer.
struct result {
  std::vector<std::vector<int32_t>> phy2log;  // [layer][slot]
  std::vector<std::vector<int32_t>> logcnt;   // [layer][expert]
};

/// `rebalance_experts(weight, R, G, N, P)`: hierarchical when G % N == 0, else the global policy
/// (the same with G = N = 1). Preconditions as in EPLB: E % G == 0, P % N == 0, R % P == 0.
[[nodiscard]] result rebalance_experts(const std::vector<std::vector<double>>& weight,
                                       int32_t num_replicas, int32_t num_groups, int32_t num_nodes,
                                       int32_t num_gpus);

/// EPLB's slots as a placement: slot s lives on GPU s / (R / P).
[[nodiscard]] placement::placement to_placement(const result& r, int32_t num_gpus);

}  // namespace xmesh::bench::eplb
