// Input checks for the planner: every error is one line naming the field at fault.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "placement/planner.hpp"

namespace xmesh::placement {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

std::string num(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

void check_load(const load_matrix& load) {
  if (load.empty()) fail("load: no layers");
  const auto experts = load[0].size();
  if (experts == 0) fail("load: layer 0 has no experts");
  for (size_t l = 0; l < load.size(); ++l) {
    if (load[l].size() != experts)
      fail("load: layer " + std::to_string(l) + " has " + std::to_string(load[l].size()) +
           " experts, layer 0 has " + std::to_string(experts));
    for (size_t e = 0; e < experts; ++e) {
      double v = load[l][e];
      if (!std::isfinite(v) || v < 0)
        fail("load: layer " + std::to_string(l) + " expert " + std::to_string(e) + " has load " +
             num(v) + "; loads must be finite and >= 0");
    }
  }
}

void check_hosts(const plan_options& o, int32_t experts) {
  if (o.hosts.empty()) fail("hosts: at least one host is needed");
  for (size_t h = 0; h < o.hosts.size(); ++h) {
    if (o.hosts[h].slots < 0) fail("host " + std::to_string(h) + ": slots must be >= 0");
    if (!std::isfinite(o.hosts[h].speed) || o.hosts[h].speed <= 0)
      fail("host " + std::to_string(h) + ": speed must be > 0, got " + num(o.hosts[h].speed));
  }
  if (o.num_replicas < experts)
    fail("replicas: " + std::to_string(o.num_replicas) + " slots per layer are fewer than the " +
         std::to_string(experts) + " experts per layer");
  int64_t reach = 0;  // a host holds each expert at most once
  for (const auto& h : o.hosts) reach += std::min(h.slots, experts);
  if (reach < o.num_replicas)
    fail("replicas: " + std::to_string(o.num_replicas) +
         " slots per layer are not reachable: the hosts hold at most " + std::to_string(reach) +
         " (their slots, at most one replica of an expert per host)");
  if (!(o.move_cost >= 0) || !std::isfinite(o.move_cost)) fail("move cost must be >= 0");
  if (!(o.expert_bytes >= 0) || !std::isfinite(o.expert_bytes)) fail("expert bytes must be >= 0");
}

void check_hierarchy(const plan_options& o, int32_t experts) {
  if (o.num_groups <= 0 && o.num_nodes <= 0) return;
  const auto hosts = static_cast<int32_t>(o.hosts.size());
  const int32_t g = o.num_groups, m = o.num_nodes;
  if (g <= 0 || m <= 0) fail("groups and nodes: give both, each >= 1");
  if (experts % g != 0)
    fail("groups: " + std::to_string(g) + " does not divide the " + std::to_string(experts) +
         " experts");
  if (g % m != 0)
    fail("nodes: " + std::to_string(m) + " does not divide the " + std::to_string(g) + " groups");
  if (hosts % m != 0)
    fail("nodes: " + std::to_string(m) + " does not divide the " + std::to_string(hosts) +
         " hosts");
  const int32_t per_node = experts / m, hosts_per_node = hosts / m;
  int64_t reach = 0;
  for (int32_t n = 0; n < m; ++n) {
    int64_t node_reach = 0;
    for (int32_t h = n * hosts_per_node; h < (n + 1) * hosts_per_node; ++h)
      node_reach += std::min(o.hosts[static_cast<size_t>(h)].slots, per_node);
    if (node_reach < per_node)
      fail("node " + std::to_string(n) + ": its hosts have " + std::to_string(node_reach) +
           " usable slots for its " + std::to_string(per_node) + " experts");
    reach += node_reach;
  }
  if (reach < o.num_replicas)
    fail("replicas: " + std::to_string(o.num_replicas) +
         " slots per layer are not reachable with groups kept within nodes: at most " +
         std::to_string(reach));
}

void check_current(const load_matrix& load, const plan_options& o, const placement& cur) {
  const auto experts = static_cast<int32_t>(load[0].size());
  const auto hosts = static_cast<int32_t>(o.hosts.size());
  if (cur.layers.size() != load.size())
    fail("current placement: " + std::to_string(cur.layers.size()) + " layers, the load has " +
         std::to_string(load.size()));
  for (size_t l = 0; l < cur.layers.size(); ++l) {
    const auto& layer = cur.layers[l];
    const std::string where = "current placement: layer " + std::to_string(l) + ": ";
    if (layer.expert_of_slot.size() != layer.host_of_slot.size())
      fail(where + "expert_of_slot has " + std::to_string(layer.expert_of_slot.size()) +
           " entries, host_of_slot " + std::to_string(layer.host_of_slot.size()));
    if (layer.expert_of_slot.size() != static_cast<size_t>(o.num_replicas))
      fail(where + std::to_string(layer.expert_of_slot.size()) + " slots, --replicas is " +
           std::to_string(o.num_replicas));
    std::vector<uint8_t> seen(static_cast<size_t>(experts) * static_cast<size_t>(hosts), 0);
    std::vector<uint8_t> present(static_cast<size_t>(experts), 0);
    for (size_t s = 0; s < layer.expert_of_slot.size(); ++s) {
      int32_t e = layer.expert_of_slot[s], h = layer.host_of_slot[s];
      if (e < 0 || e >= experts)
        fail(where + "slot " + std::to_string(s) + " names expert " + std::to_string(e) +
             ", outside 0.." + std::to_string(experts - 1));
      if (h < 0 || h >= hosts)
        fail(where + "slot " + std::to_string(s) + " names host " + std::to_string(h) +
             ", outside 0.." + std::to_string(hosts - 1));
      auto& cell =
          seen[static_cast<size_t>(h) * static_cast<size_t>(experts) + static_cast<size_t>(e)];
      if (cell)
        fail(where + "expert " + std::to_string(e) + " has two replicas on host " +
             std::to_string(h));
      cell = 1;
      present[static_cast<size_t>(e)] = 1;
    }
    auto missing = std::find(present.begin(), present.end(), 0);
    if (missing != present.end())
      fail(where + "expert " + std::to_string(missing - present.begin()) + " has no replica");
  }
}

}  // namespace

void validate_inputs(const load_matrix& load, const plan_options& options,
                     const placement* current) {
  check_load(load);
  const auto experts = static_cast<int32_t>(load[0].size());
  check_hosts(options, experts);
  check_hierarchy(options, experts);
  if (current != nullptr) check_current(load, options, *current);
}

}  // namespace xmesh::placement
