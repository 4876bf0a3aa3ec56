#include "placement/placement.hpp"

#include <algorithm>
#include <numeric>

namespace xmesh::placement {

std::vector<int32_t> replica_counts(const layer_placement& layer, int32_t num_experts) {
  std::vector<int32_t> count(static_cast<size_t>(num_experts), 0);
  for (int32_t e : layer.expert_of_slot) ++count[static_cast<size_t>(e)];
  return count;
}

std::vector<double> host_times(const layer_placement& layer, const std::vector<double>& load,
                               const std::vector<host_spec>& hosts) {
  auto count = replica_counts(layer, static_cast<int32_t>(load.size()));
  std::vector<double> time(hosts.size(), 0.0);
  for (size_t s = 0; s < layer.expert_of_slot.size(); ++s) {
    auto e = static_cast<size_t>(layer.expert_of_slot[s]);
    auto h = static_cast<size_t>(layer.host_of_slot[s]);
    time[h] += load[e] / count[e];
  }
  for (size_t h = 0; h < hosts.size(); ++h) time[h] /= hosts[h].speed;
  return time;
}

double max_time(const std::vector<double>& times) {
  return times.empty() ? 0.0 : *std::max_element(times.begin(), times.end());
}

double balancedness(const std::vector<double>& times) {
  double peak = max_time(times);
  if (peak <= 0.0) return 1.0;
  double mean =
      std::accumulate(times.begin(), times.end(), 0.0) / static_cast<double>(times.size());
  return mean / peak;
}

int64_t moved_replicas(const layer_placement& before, const layer_placement& after,
                       int32_t num_experts, int32_t num_hosts) {
  std::vector<uint8_t> had(static_cast<size_t>(num_experts) * static_cast<size_t>(num_hosts), 0);
  auto index = [&](int32_t h, int32_t e) {
    return static_cast<size_t>(h) * static_cast<size_t>(num_experts) + static_cast<size_t>(e);
  };
  for (size_t s = 0; s < before.expert_of_slot.size(); ++s)
    had[index(before.host_of_slot[s], before.expert_of_slot[s])] = 1;
  int64_t moved = 0;
  for (size_t s = 0; s < after.expert_of_slot.size(); ++s)
    if (!had[index(after.host_of_slot[s], after.expert_of_slot[s])]) ++moved;
  return moved;
}

std::vector<int32_t> even_slots(int32_t num_replicas, int32_t num_hosts) {
  std::vector<int32_t> slots(static_cast<size_t>(num_hosts), num_replicas / num_hosts);
  for (int32_t h = 0; h < num_replicas % num_hosts; ++h) ++slots[static_cast<size_t>(h)];
  return slots;
}

layer_placement naive_placement(int32_t num_experts, int32_t num_replicas,
                                const std::vector<host_spec>& hosts) {
  // Water-fill R slots over the hosts, one round at a time, so that blocks are as even as the
  // limits allow; the caller has checked that the limits reach R.
  std::vector<int32_t> block(hosts.size(), 0);
  int32_t left = num_replicas;
  while (left > 0) {
    bool grew = false;
    for (size_t h = 0; h < hosts.size() && left > 0; ++h) {
      if (block[h] >= std::min(hosts[h].slots, num_experts)) continue;
      ++block[h];
      --left;
      grew = true;
    }
    if (!grew) break;
  }
  layer_placement out;
  int32_t slot = 0;
  for (size_t h = 0; h < hosts.size(); ++h) {
    for (int32_t k = 0; k < block[h]; ++k, ++slot) {
      out.expert_of_slot.push_back(slot % num_experts);
      out.host_of_slot.push_back(static_cast<int32_t>(h));
    }
  }
  return out;
}

}  // namespace xmesh::placement
