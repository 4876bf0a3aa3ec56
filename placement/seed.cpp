#include "placement/seed.hpp"

#include <algorithm>
#include <numeric>
#include <queue>
#include <utility>

namespace xmesh::placement {

namespace {

// Tracks the replica counts of one domain (a node, or all hosts) and answers whether one more
// replica of an expert still leaves a valid packing. Gale-Ryser: counts sorted descending have a
// packing on distinct hosts iff every prefix sum P(k) <= Q(k) = sum over hosts of min(slots, k).
class domain_budget {
 public:
  domain_budget(std::vector<int32_t> slots, int32_t num_experts)
      : q_(static_cast<size_t>(num_experts) + 1, 0),
        hist_(slots.size() + 2, 0),
        num_experts_(num_experts) {
    for (int32_t k = 1; k <= num_experts; ++k)
      for (int32_t s : slots) q_[static_cast<size_t>(k)] += std::min(s, k);
    hist_[1] = num_experts;  // everyone starts with one replica
  }

  /// Whether an expert with c replicas may get one more.
  [[nodiscard]] bool can_increment(int32_t c) const {
    if (static_cast<size_t>(c + 1) >= hist_.size()) return false;
    auto hist = hist_;
    --hist[static_cast<size_t>(c)];
    ++hist[static_cast<size_t>(c + 1)];
    int64_t prefix = 0;
    int32_t k = 0;
    for (auto v = static_cast<int32_t>(hist.size()) - 1; v >= 1; --v) {
      for (int32_t i = 0; i < hist[static_cast<size_t>(v)]; ++i) {
        prefix += v;
        if (prefix > q_[static_cast<size_t>(++k)]) return false;
      }
    }
    return k <= num_experts_;
  }

  void increment(int32_t c) {
    --hist_[static_cast<size_t>(c)];
    ++hist_[static_cast<size_t>(c + 1)];
  }

 private:
  std::vector<int64_t> q_;
  std::vector<int32_t> hist_;  // hist_[c]: experts with c replicas
  int32_t num_experts_;
};

// One domain per node in hierarchical mode, else a single domain; returns budgets and each
// expert's domain.
std::pair<std::vector<domain_budget>, std::vector<int32_t>> make_domains(const layer_problem& p) {
  int32_t num_domains = 1;
  if (!p.node_of_expert.empty())
    num_domains = 1 + *std::max_element(p.node_of_host.begin(), p.node_of_host.end());
  std::vector<int32_t> domain_of(static_cast<size_t>(p.num_experts()), 0);
  if (!p.node_of_expert.empty()) domain_of = p.node_of_expert;
  std::vector<domain_budget> budgets;
  for (int32_t d = 0; d < num_domains; ++d) {
    std::vector<int32_t> slots;
    for (int32_t h = 0; h < p.num_hosts(); ++h)
      if (p.node_of_expert.empty() || p.node_of_host[static_cast<size_t>(h)] == d)
        slots.push_back(p.hosts[static_cast<size_t>(h)].slots);
    auto experts = static_cast<int32_t>(std::count(domain_of.begin(), domain_of.end(), d));
    budgets.emplace_back(std::move(slots), experts);
  }
  return {std::move(budgets), std::move(domain_of)};
}

struct replica_item {
  double load;
  int32_t expert;
};

// Replicas heaviest first; replicas of one expert stay together (ties: lower expert id first).
std::vector<replica_item> sorted_replicas(const layer_problem& p,
                                          const std::vector<int32_t>& counts) {
  std::vector<replica_item> items;
  for (int32_t e = 0; e < p.num_experts(); ++e)
    for (int32_t r = 0; r < counts[static_cast<size_t>(e)]; ++r)
      items.push_back({p.load[static_cast<size_t>(e)] / counts[static_cast<size_t>(e)], e});
  std::stable_sort(items.begin(), items.end(),
                   [](const replica_item& a, const replica_item& b) { return a.load > b.load; });
  return items;
}

}  // namespace

std::vector<int32_t> greedy_counts(const layer_problem& p) {
  auto [budgets, domain_of] = make_domains(p);
  std::vector<int32_t> counts(static_cast<size_t>(p.num_experts()), 1);
  // Largest load per replica first; on ties the lower expert id wins, as in EPLB's argmax.
  using entry = std::pair<double, int32_t>;
  auto later = [](const entry& a, const entry& b) {
    return a.first < b.first || (a.first == b.first && a.second > b.second);
  };
  std::priority_queue<entry, std::vector<entry>, decltype(later)> queue(later);
  for (int32_t e = 0; e < p.num_experts(); ++e) queue.push({p.load[static_cast<size_t>(e)], e});
  for (int32_t extra = p.num_replicas - p.num_experts(); extra > 0 && !queue.empty();) {
    int32_t e = queue.top().second;
    queue.pop();
    auto& c = counts[static_cast<size_t>(e)];
    auto& budget = budgets[static_cast<size_t>(domain_of[static_cast<size_t>(e)])];
    if (!budget.can_increment(c)) continue;  // budgets only shrink: e stays blocked
    budget.increment(c);
    ++c;
    --extra;
    queue.push({p.load[static_cast<size_t>(e)] / c, e});
  }
  return counts;
}

bool lpt_pack(const std::vector<int32_t>& counts, layer_state& state) {
  const auto& p = state.problem();
  std::vector<double> time(static_cast<size_t>(p.num_hosts()), 0.0);
  std::vector<int32_t> used(static_cast<size_t>(p.num_hosts()), 0);
  std::vector<std::pair<int32_t, int32_t>> chosen;  // (host, expert)
  std::vector<uint8_t> has(static_cast<size_t>(p.num_hosts() * p.num_experts()), 0);
  for (const auto& item : sorted_replicas(p, counts)) {
    int32_t best = -1;
    double best_finish = 0.0;
    for (int32_t h = 0; h < p.num_hosts(); ++h) {
      auto hs = static_cast<size_t>(h);
      if (used[hs] >= p.hosts[hs].slots || !p.allowed(h, item.expert)) continue;
      if (has[hs * static_cast<size_t>(p.num_experts()) + static_cast<size_t>(item.expert)])
        continue;
      double finish = time[hs] + item.load / p.hosts[hs].speed;
      if (best < 0 || finish < best_finish) best = h, best_finish = finish;
    }
    if (best < 0) return false;
    auto bs = static_cast<size_t>(best);
    time[bs] = best_finish;
    ++used[bs];
    has[bs * static_cast<size_t>(p.num_experts()) + static_cast<size_t>(item.expert)] = 1;
    chosen.emplace_back(best, item.expert);
  }
  for (auto [h, e] : chosen) state.add(h, e);
  return true;
}

void constructive_pack(const std::vector<int32_t>& counts, layer_state& state) {
  const auto& p = state.problem();
  std::vector<int32_t> order(static_cast<size_t>(p.num_experts()));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return counts[static_cast<size_t>(a)] > counts[static_cast<size_t>(b)];
  });
  std::vector<int32_t> free(static_cast<size_t>(p.num_hosts()));
  for (int32_t h = 0; h < p.num_hosts(); ++h)
    free[static_cast<size_t>(h)] = p.hosts[static_cast<size_t>(h)].slots;
  std::vector<std::pair<int32_t, int32_t>> chosen;
  for (int32_t e : order) {
    std::vector<int32_t> hosts;
    for (int32_t h = 0; h < p.num_hosts(); ++h)
      if (free[static_cast<size_t>(h)] > 0 && p.allowed(h, e)) hosts.push_back(h);
    std::stable_sort(hosts.begin(), hosts.end(), [&](int32_t a, int32_t b) {
      return free[static_cast<size_t>(a)] > free[static_cast<size_t>(b)];
    });
    auto n = std::min<size_t>(hosts.size(), static_cast<size_t>(counts[static_cast<size_t>(e)]));
    for (size_t i = 0; i < n; ++i) {
      --free[static_cast<size_t>(hosts[i])];
      chosen.emplace_back(hosts[i], e);
    }
  }
  for (auto [h, e] : chosen) state.add(h, e);
}

namespace {

// Groups on nodes with their per-node load; node time is load over the node's speed.
struct group_split {
  std::vector<double> group_load, node_load;
  std::vector<int32_t> node_of_group;
  const std::vector<double>* node_speed;

  [[nodiscard]] double time_of(int32_t n) const {
    return node_load[static_cast<size_t>(n)] / (*node_speed)[static_cast<size_t>(n)];
  }
  void put(int32_t g, int32_t n) {
    node_of_group[static_cast<size_t>(g)] = n;
    node_load[static_cast<size_t>(n)] += group_load[static_cast<size_t>(g)];
  }
};

// LPT with a cardinality limit: heaviest group first, to the node finishing earliest with room.
void pack_groups(group_split& split, int32_t per_node) {
  const auto num_groups = static_cast<int32_t>(split.group_load.size());
  const auto num_nodes = static_cast<int32_t>(split.node_load.size());
  std::vector<int32_t> order(static_cast<size_t>(num_groups));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return split.group_load[static_cast<size_t>(a)] > split.group_load[static_cast<size_t>(b)];
  });
  std::vector<int32_t> taken(static_cast<size_t>(num_nodes), 0);
  for (int32_t g : order) {
    int32_t best = -1;
    double best_time = 0.0;
    for (int32_t n = 0; n < num_nodes; ++n) {
      if (taken[static_cast<size_t>(n)] >= per_node) continue;
      double t =
          (split.node_load[static_cast<size_t>(n)] + split.group_load[static_cast<size_t>(g)]) /
          (*split.node_speed)[static_cast<size_t>(n)];
      if (best < 0 || t < best_time) best = n, best_time = t;
    }
    split.put(g, best);
    ++taken[static_cast<size_t>(best)];
  }
}

// Swaps a group of the last-finishing node with one elsewhere; false when no swap lowers the
// pair's later finish time.
bool swap_groups(group_split& split) {
  const auto num_groups = static_cast<int32_t>(split.group_load.size());
  int32_t top = 0;
  for (int32_t n = 1; n < static_cast<int32_t>(split.node_load.size()); ++n)
    if (split.time_of(n) > split.time_of(top)) top = n;
  double best_peak = split.time_of(top) * (1.0 - 1e-12);
  int32_t best_a = -1, best_b = -1;
  for (int32_t a = 0; a < num_groups; ++a) {
    if (split.node_of_group[static_cast<size_t>(a)] != top) continue;
    for (int32_t b = 0; b < num_groups; ++b) {
      int32_t other = split.node_of_group[static_cast<size_t>(b)];
      if (other == top) continue;
      double d =
          split.group_load[static_cast<size_t>(a)] - split.group_load[static_cast<size_t>(b)];
      double peak =
          std::max(split.time_of(top) - d / (*split.node_speed)[static_cast<size_t>(top)],
                   split.time_of(other) + d / (*split.node_speed)[static_cast<size_t>(other)]);
      if (peak < best_peak) best_peak = peak, best_a = a, best_b = b;
    }
  }
  if (best_a < 0) return false;
  int32_t other = split.node_of_group[static_cast<size_t>(best_b)];
  split.node_load[static_cast<size_t>(top)] -= split.group_load[static_cast<size_t>(best_a)];
  split.node_load[static_cast<size_t>(other)] -= split.group_load[static_cast<size_t>(best_b)];
  split.put(best_a, other);
  split.put(best_b, top);
  return true;
}

}  // namespace

std::vector<int32_t> assign_groups(const std::vector<double>& load, int32_t num_groups,
                                   const std::vector<double>& node_speed) {
  const auto num_nodes = static_cast<int32_t>(node_speed.size());
  const auto group_size = static_cast<size_t>(static_cast<int32_t>(load.size()) / num_groups);
  group_split split{std::vector<double>(static_cast<size_t>(num_groups), 0.0),
                    std::vector<double>(static_cast<size_t>(num_nodes), 0.0),
                    std::vector<int32_t>(static_cast<size_t>(num_groups), 0), &node_speed};
  for (size_t e = 0; e < load.size(); ++e) split.group_load[e / group_size] += load[e];
  pack_groups(split, num_groups / num_nodes);
  // Each swap strictly lowers the sorted node times; the bound only guards against rounding.
  for (int32_t round = 0; round < num_groups * num_groups && swap_groups(split); ++round) {
  }
  std::vector<int32_t> node_of_expert(load.size());
  for (size_t e = 0; e < load.size(); ++e) node_of_expert[e] = split.node_of_group[e / group_size];
  return node_of_expert;
}

}  // namespace xmesh::placement
