#include "actors/placement_table.hpp"

#include <algorithm>
#include <stdexcept>

namespace xmesh::actors {

namespace {

// For spread: expert e of every layer goes to the node with the most budget left per expert
// already given (smooth weighted round robin), so shares follow the budgets.
std::vector<std::vector<int32_t>> spread(const std::vector<const node_config*>& hosts,
                                         int64_t num_experts) {
  std::vector<double> weight, credit(hosts.size(), 0.0);
  double total = 0;
  for (const auto* h : hosts) {
    weight.push_back(h->memory_budget_bytes > 0 ? static_cast<double>(h->memory_budget_bytes)
                                                : 1.0);
    total += weight.back();
  }
  std::vector<std::vector<int32_t>> out(num_experts);
  for (int64_t e = 0; e < num_experts; ++e) {
    for (size_t i = 0; i < hosts.size(); ++i) credit[i] += weight[i];
    size_t best = std::max_element(credit.begin(), credit.end()) - credit.begin();
    credit[best] -= total;
    out[e] = {static_cast<int32_t>(best)};
  }
  return out;
}

}  // namespace

std::span<const int32_t> placement_table::replicas(int64_t layer, int64_t expert) const {
  int64_t slot = layer * num_experts + expert;
  return {replica_node.data() + replica_begin[slot], replica_node.data() + replica_begin[slot + 1]};
}

bool placement_table::hosts(int32_t node, int64_t layer, int64_t expert) const {
  auto r = replicas(layer, expert);
  return std::find(r.begin(), r.end(), node) != r.end();
}

placement_table make_placement(const cluster_config& cluster, const model::model_config& model,
                               int64_t expert_bytes, uint64_t version) {
  placement_table t;
  t.version = version;
  t.num_layers = model.num_layers;
  t.num_experts = model.num_experts;
  auto hosts = cluster.with_role(role::experts);
  for (const auto* h : hosts) {
    t.nodes.push_back(h->name);
    t.addresses.push_back(h->data_address(cluster.transport));
  }
  std::vector<std::vector<int32_t>> per_expert(model.num_experts);
  if (cluster.placement == "static") {
    for (size_t i = 0; i < hosts.size(); ++i) {
      auto it = cluster.static_experts.find(hosts[i]->name);
      if (it == cluster.static_experts.end()) continue;
      for (int64_t e : it->second) {
        if (e < 0 || e >= model.num_experts)
          throw std::runtime_error("static_placement: node '" + hosts[i]->name + "' names expert " +
                                   std::to_string(e) + ", the model has " +
                                   std::to_string(model.num_experts));
        per_expert[e].push_back(static_cast<int32_t>(i));
      }
    }
    for (int64_t e = 0; e < model.num_experts; ++e)
      if (per_expert[e].empty())
        throw std::runtime_error("static_placement: expert " + std::to_string(e) +
                                 " has no replica");
  } else {
    per_expert = spread(hosts, model.num_experts);
  }
  std::vector<int64_t> count(hosts.size(), 0);
  for (const auto& r : per_expert)
    for (int32_t n : r) count[n] += model.num_layers;
  for (size_t i = 0; i < hosts.size(); ++i)
    if (hosts[i]->memory_budget_bytes > 0 &&
        count[i] * expert_bytes > hosts[i]->memory_budget_bytes)
      throw std::runtime_error("node '" + hosts[i]->name + "': memory_budget " +
                               std::to_string(hosts[i]->memory_budget_bytes) +
                               " bytes cannot hold its " + std::to_string(count[i]) + " experts (" +
                               std::to_string(count[i] * expert_bytes) + " bytes)");
  t.replica_begin.push_back(0);
  for (int64_t l = 0; l < model.num_layers; ++l)
    for (int64_t e = 0; e < model.num_experts; ++e) {
      t.replica_node.insert(t.replica_node.end(), per_expert[e].begin(), per_expert[e].end());
      t.replica_begin.push_back(static_cast<int32_t>(t.replica_node.size()));
    }
  return t;
}

void check_placement(const placement_table& t, const model::model_config& model) {
  auto fail = [](const std::string& what) { throw std::runtime_error("placement table: " + what); };
  if (t.num_layers != model.num_layers || t.num_experts != model.num_experts)
    fail("shape " + std::to_string(t.num_layers) + " x " + std::to_string(t.num_experts) +
         " does not match the model (" + std::to_string(model.num_layers) + " x " +
         std::to_string(model.num_experts) + ")");
  if (t.addresses.size() != t.nodes.size()) fail("node and address lists differ in length");
  if (t.replica_begin.size() != static_cast<size_t>(t.num_layers * t.num_experts + 1) ||
      t.replica_begin.front() != 0 ||
      t.replica_begin.back() != static_cast<int32_t>(t.replica_node.size()))
    fail("replica index has the wrong size");
  for (size_t s = 1; s < t.replica_begin.size(); ++s)
    if (t.replica_begin[s] < t.replica_begin[s - 1])
      fail("replica index decreases at slot " + std::to_string(s - 1));
  for (int32_t n : t.replica_node)
    if (n < 0 || n >= static_cast<int32_t>(t.nodes.size()))
      fail("replica on unknown node " + std::to_string(n));
}

placement_table with_replica(const placement_table& t, int64_t layer, int64_t expert, int32_t node,
                             bool add) {
  if (t.hosts(node, layer, expert) == add)
    throw std::runtime_error("node '" + t.nodes.at(node) + "' " +
                             (add ? "already hosts" : "does not host") + " expert " +
                             std::to_string(expert) + " of layer " + std::to_string(layer));
  placement_table out = t;
  out.version = t.version + 1;
  out.replica_node.clear();
  out.replica_begin.assign(1, 0);
  const int64_t target = layer * t.num_experts + expert;
  for (int64_t s = 0; s < t.num_layers * t.num_experts; ++s) {
    for (int32_t i = t.replica_begin[s]; i < t.replica_begin[s + 1]; ++i)
      if (s != target || t.replica_node[i] != node) out.replica_node.push_back(t.replica_node[i]);
    if (s == target && add) {
      auto begin = out.replica_node.begin() + out.replica_begin.back();
      out.replica_node.insert(std::upper_bound(begin, out.replica_node.end(), node), node);
    }
    out.replica_begin.push_back(static_cast<int32_t>(out.replica_node.size()));
  }
  return out;
}

placement_table with_column(const placement_table& t, int32_t node,
                            const std::vector<int64_t>& slots) {
  std::vector<bool> wanted(t.num_layers * t.num_experts, false);
  for (int64_t s : slots)
    if (s >= 0 && s < static_cast<int64_t>(wanted.size())) wanted[s] = true;
  placement_table out = t;
  out.version = t.version + 1;
  out.replica_node.clear();
  out.replica_begin.assign(1, 0);
  for (int64_t s = 0; s < t.num_layers * t.num_experts; ++s) {
    auto begin = out.replica_node.size();
    for (int32_t i = t.replica_begin[s]; i < t.replica_begin[s + 1]; ++i)
      if (t.replica_node[i] != node) out.replica_node.push_back(t.replica_node[i]);
    if (wanted[s])
      out.replica_node.insert(
          std::upper_bound(out.replica_node.begin() + begin, out.replica_node.end(), node), node);
    out.replica_begin.push_back(static_cast<int32_t>(out.replica_node.size()));
  }
  return out;
}

placement_table with_node(const placement_table& t, const std::string& name,
                          const std::string& address) {
  placement_table out = t;
  out.version = t.version + 1;
  out.nodes.push_back(name);
  out.addresses.push_back(address);
  return out;
}

placement_table without_replicas(const placement_table& t) {
  placement_table out = t;
  out.replica_node.clear();
  out.replica_begin.assign(t.replica_begin.size(), 0);
  return out;
}

std::vector<int64_t> orphaned_experts(const placement_table& t) {
  std::vector<int64_t> out;
  for (int64_t s = 0; s < t.num_layers * t.num_experts; ++s)
    if (t.replica_begin[s] == t.replica_begin[s + 1]) out.push_back(s);
  return out;
}

int32_t node_index(const placement_table& t, const std::string& name) {
  auto it = std::find(t.nodes.begin(), t.nodes.end(), name);
  return it == t.nodes.end() ? -1 : static_cast<int32_t>(it - t.nodes.begin());
}

std::vector<int64_t> hosted_experts(const placement_table& t, const std::string& node_name) {
  auto it = std::find(t.nodes.begin(), t.nodes.end(), node_name);
  std::vector<int64_t> out;
  if (it == t.nodes.end()) return out;
  auto node = static_cast<int32_t>(it - t.nodes.begin());
  for (int64_t l = 0; l < t.num_layers; ++l)
    for (int64_t e = 0; e < t.num_experts; ++e)
      if (t.hosts(node, l, e)) out.push_back(l * t.num_experts + e);
  return out;
}

}  // namespace xmesh::actors
