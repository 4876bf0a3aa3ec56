#include "bench/placement/eplb.hpp"

#include <algorithm>
#include <numeric>

namespace xmesh::bench::eplb {

namespace {

using row = std::vector<double>;
using index_row = std::vector<int32_t>;

// balanced_packing for one row: n items into m packs of n/m items each, heaviest item first to
// the lightest pack with room (first such pack on ties).
void balanced_packing(const row& w, int32_t num_packs, index_row& pack, index_row& rank) {
  const auto n = static_cast<int32_t>(w.size());
  const int32_t per_pack = n / num_packs;
  pack.assign(static_cast<size_t>(n), 0);
  rank.assign(static_cast<size_t>(n), 0);
  if (per_pack == 1) {
    std::iota(pack.begin(), pack.end(), 0);
    return;
  }
  index_row order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return w[static_cast<size_t>(a)] > w[static_cast<size_t>(b)];
  });
  std::vector<double> weight(static_cast<size_t>(num_packs), 0.0);
  std::vector<int32_t> items(static_cast<size_t>(num_packs), 0);
  for (int32_t i : order) {
    int32_t best = -1;
    for (int32_t p = 0; p < num_packs; ++p) {
      if (items[static_cast<size_t>(p)] >= per_pack) continue;
      if (best < 0 || weight[static_cast<size_t>(p)] < weight[static_cast<size_t>(best)]) best = p;
    }
    pack[static_cast<size_t>(i)] = best;
    rank[static_cast<size_t>(i)] = items[static_cast<size_t>(best)]++;
    weight[static_cast<size_t>(best)] += w[static_cast<size_t>(i)];
  }
}

// replicate_experts for one row: each extra slot to the expert with max w / count (first wins).
void replicate_experts(const row& w, int32_t num_phy, index_row& phy2log, index_row& logcnt) {
  const auto num_log = static_cast<int32_t>(w.size());
  phy2log.resize(static_cast<size_t>(num_phy));
  std::iota(phy2log.begin(), phy2log.begin() + num_log, 0);
  logcnt.assign(static_cast<size_t>(num_log), 1);
  for (int32_t i = num_log; i < num_phy; ++i) {
    int32_t best = 0;
    for (int32_t e = 1; e < num_log; ++e)
      if (w[static_cast<size_t>(e)] / logcnt[static_cast<size_t>(e)] >
          w[static_cast<size_t>(best)] / logcnt[static_cast<size_t>(best)])
        best = e;
    phy2log[static_cast<size_t>(i)] = best;
    ++logcnt[static_cast<size_t>(best)];
  }
}

index_row inverse(const index_row& perm) {
  index_row inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    inv[static_cast<size_t>(perm[i])] = static_cast<int32_t>(i);
  return inv;
}

// rebalance_experts_hierarchical for one layer; fills phy2log [R] and logcnt [E].
void rebalance_layer(const row& w, int32_t num_phy, int32_t num_groups, int32_t num_nodes,
                     int32_t num_gpus, index_row& phy2log, index_row& logcnt) {
  const auto num_log = static_cast<int32_t>(w.size());
  const int32_t group_size = num_log / num_groups, groups_per_node = num_groups / num_nodes;
  const int32_t log_per_node = num_log / num_nodes, phy_per_node = num_phy / num_nodes;
  const int32_t phy_per_gpu = num_phy / num_gpus;
  // Step 1: groups to nodes; renumber experts so that each node owns a contiguous block.
  row group_load(static_cast<size_t>(num_groups), 0.0);
  for (int32_t e = 0; e < num_log; ++e)
    group_load[static_cast<size_t>(e / group_size)] += w[static_cast<size_t>(e)];
  index_row gpack, grank;
  balanced_packing(group_load, num_nodes, gpack, grank);
  index_row log2mlog(static_cast<size_t>(num_log));
  for (int32_t e = 0; e < num_log; ++e) {
    int32_t g = e / group_size;
    log2mlog[static_cast<size_t>(e)] =
        (gpack[static_cast<size_t>(g)] * groups_per_node + grank[static_cast<size_t>(g)]) *
            group_size +
        e % group_size;
  }
  auto mlog2log = inverse(log2mlog);
  phy2log.assign(static_cast<size_t>(num_phy), -1);
  index_row mlogcnt(static_cast<size_t>(num_log), 0);
  for (int32_t n = 0; n < num_nodes; ++n) {
    // Step 2: replicate within the node.
    row node_w(static_cast<size_t>(log_per_node));
    for (int32_t i = 0; i < log_per_node; ++i)
      node_w[static_cast<size_t>(i)] =
          w[static_cast<size_t>(mlog2log[static_cast<size_t>(n * log_per_node + i)])];
    index_row phy2mlog, cnt;
    replicate_experts(node_w, phy_per_node, phy2mlog, cnt);
    // Step 3: pack the node's replicas onto its GPUs.
    row phy_w(static_cast<size_t>(phy_per_node));
    for (int32_t i = 0; i < phy_per_node; ++i) {
      auto m = static_cast<size_t>(phy2mlog[static_cast<size_t>(i)]);
      phy_w[static_cast<size_t>(i)] = node_w[m] / cnt[m];
    }
    index_row pack, rank;
    balanced_packing(phy_w, num_gpus / num_nodes, pack, rank);
    index_row phy2pphy(static_cast<size_t>(phy_per_node));
    for (int32_t i = 0; i < phy_per_node; ++i)
      phy2pphy[static_cast<size_t>(i)] =
          pack[static_cast<size_t>(i)] * phy_per_gpu + rank[static_cast<size_t>(i)];
    auto pphy2phy = inverse(phy2pphy);
    for (int32_t j = 0; j < phy_per_node; ++j) {
      int32_t mlog =
          phy2mlog[static_cast<size_t>(pphy2phy[static_cast<size_t>(j)])] + n * log_per_node;
      phy2log[static_cast<size_t>(n * phy_per_node + j)] = mlog2log[static_cast<size_t>(mlog)];
    }
    for (int32_t i = 0; i < log_per_node; ++i)
      mlogcnt[static_cast<size_t>(n * log_per_node + i)] = cnt[static_cast<size_t>(i)];
  }
  logcnt.resize(static_cast<size_t>(num_log));
  for (int32_t e = 0; e < num_log; ++e)
    logcnt[static_cast<size_t>(e)] = mlogcnt[static_cast<size_t>(log2mlog[static_cast<size_t>(e)])];
}

}  // namespace

result rebalance_experts(const std::vector<std::vector<double>>& weight, int32_t num_replicas,
                         int32_t num_groups, int32_t num_nodes, int32_t num_gpus) {
  const bool hierarchical = num_groups % num_nodes == 0;
  result out;
  for (const auto& w : weight) {
    index_row phy2log, logcnt;
    if (hierarchical)
      rebalance_layer(w, num_replicas, num_groups, num_nodes, num_gpus, phy2log, logcnt);
    else
      rebalance_layer(w, num_replicas, 1, 1, num_gpus, phy2log, logcnt);
    out.phy2log.push_back(std::move(phy2log));
    out.logcnt.push_back(std::move(logcnt));
  }
  return out;
}

placement::placement to_placement(const result& r, int32_t num_gpus) {
  placement::placement out;
  for (const auto& slots : r.phy2log) {
    placement::layer_placement layer;
    const auto per_gpu = static_cast<int32_t>(slots.size()) / num_gpus;
    for (size_t s = 0; s < slots.size(); ++s) {
      layer.expert_of_slot.push_back(slots[s]);
      layer.host_of_slot.push_back(static_cast<int32_t>(s) / per_gpu);
    }
    out.layers.push_back(std::move(layer));
  }
  return out;
}

}  // namespace xmesh::bench::eplb
