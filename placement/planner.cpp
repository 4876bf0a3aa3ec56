#include "placement/planner.hpp"

#include <algorithm>
#include <numeric>

#include "placement/layer_state.hpp"
#include "placement/local_search.hpp"
#include "placement/seed.hpp"

namespace xmesh::placement {

namespace {

// Facts shared by every layer of one plan() call.
struct plan_context {
  const plan_options* options = nullptr;
  std::vector<host_spec> hosts;       // slots capped at the number of experts
  std::vector<int32_t> node_of_host;  // empty unless hierarchical
  std::vector<double> node_speed;
  int32_t num_experts = 0;

  [[nodiscard]] bool hierarchical() const { return !node_of_host.empty(); }
};

plan_context make_context(const load_matrix& load, const plan_options& o) {
  plan_context ctx;
  ctx.options = &o;
  ctx.num_experts = static_cast<int32_t>(load[0].size());
  for (auto h : o.hosts) {
    h.slots = std::min(h.slots, ctx.num_experts);
    ctx.hosts.push_back(h);
  }
  if (o.num_groups > 0) {
    auto per_node = static_cast<int32_t>(o.hosts.size()) / o.num_nodes;
    ctx.node_speed.assign(static_cast<size_t>(o.num_nodes), 0.0);
    for (size_t h = 0; h < o.hosts.size(); ++h) {
      ctx.node_of_host.push_back(static_cast<int32_t>(h) / per_node);
      if (o.hosts[h].slots > 0)
        ctx.node_speed[h / static_cast<size_t>(per_node)] += o.hosts[h].speed;
    }
  }
  return ctx;
}

// The node of every expert in `layer` when each group sits within one node with G/M groups per
// node (so local search may start from it); empty otherwise.
std::vector<int32_t> groups_of(const plan_context& ctx, const layer_placement& layer) {
  const int32_t groups = ctx.options->num_groups, nodes = ctx.options->num_nodes;
  const int32_t group_size = ctx.num_experts / groups;
  std::vector<int32_t> node_of_group(static_cast<size_t>(groups), -1);
  for (size_t s = 0; s < layer.expert_of_slot.size(); ++s) {
    auto& n = node_of_group[static_cast<size_t>(layer.expert_of_slot[s] / group_size)];
    int32_t node = ctx.node_of_host[static_cast<size_t>(layer.host_of_slot[s])];
    if (n >= 0 && n != node) return {};
    n = node;
  }
  for (int32_t node = 0; node < nodes; ++node)
    if (std::count(node_of_group.begin(), node_of_group.end(), node) != groups / nodes) return {};
  std::vector<int32_t> out(static_cast<size_t>(ctx.num_experts));
  for (int32_t e = 0; e < ctx.num_experts; ++e)
    out[static_cast<size_t>(e)] = node_of_group[static_cast<size_t>(e / group_size)];
  return out;
}

// Whether `layer` respects the problem's slot limits and node constraints.
bool fits(const layer_problem& p, const layer_placement& layer) {
  std::vector<int32_t> used(static_cast<size_t>(p.num_hosts()), 0);
  for (size_t s = 0; s < layer.expert_of_slot.size(); ++s) {
    int32_t h = layer.host_of_slot[s];
    if (++used[static_cast<size_t>(h)] > p.hosts[static_cast<size_t>(h)].slots) return false;
    if (!p.allowed(h, layer.expert_of_slot[s])) return false;
  }
  return true;
}

// Replication, packing, then iterated local search: a layer planned from nothing.
layer_placement plan_fresh(const layer_problem& p, int64_t effort) {
  auto counts = greedy_counts(p);
  layer_state state(p);
  if (!lpt_pack(counts, state)) {
    state = layer_state(p);
    constructive_pack(counts, state);
  }
  iterated_search(state, effort, /*seed=*/0x5eed);
  return state.to_layer();
}

std::vector<uint8_t> held(const layer_placement& layer, int32_t experts, int32_t hosts) {
  std::vector<uint8_t> has(static_cast<size_t>(experts) * static_cast<size_t>(hosts), 0);
  for (size_t s = 0; s < layer.expert_of_slot.size(); ++s)
    has[static_cast<size_t>(layer.host_of_slot[s]) * static_cast<size_t>(experts) +
        static_cast<size_t>(layer.expert_of_slot[s])] = 1;
  return has;
}

// Renames hosts of `fresh` among interchangeable hosts (same slots, speed and node) so that it
// keeps as many of `current`'s replicas in place as a greedy matching finds.
layer_placement relabel(const plan_context& ctx, const layer_placement& fresh,
                        const layer_placement& current) {
  const auto n = static_cast<int32_t>(ctx.hosts.size());
  const auto e = static_cast<size_t>(ctx.num_experts);
  auto a = held(fresh, ctx.num_experts, n), b = held(current, ctx.num_experts, n);
  auto same_kind = [&](int32_t i, int32_t j) {
    const auto &x = ctx.hosts[static_cast<size_t>(i)], &y = ctx.hosts[static_cast<size_t>(j)];
    bool same_node = !ctx.hierarchical() || ctx.node_of_host[static_cast<size_t>(i)] ==
                                                ctx.node_of_host[static_cast<size_t>(j)];
    return x.slots == y.slots && x.speed == y.speed && same_node;
  };
  struct pair_overlap {
    int32_t overlap, from, to;
  };
  std::vector<pair_overlap> pairs;
  for (int32_t i = 0; i < n; ++i)
    for (int32_t j = 0; j < n; ++j) {
      if (!same_kind(i, j)) continue;
      int32_t overlap = 0;
      for (size_t k = 0; k < e; ++k)
        overlap += a[static_cast<size_t>(i) * e + k] & b[static_cast<size_t>(j) * e + k];
      pairs.push_back({overlap, i, j});
    }
  std::stable_sort(pairs.begin(), pairs.end(), [](const pair_overlap& x, const pair_overlap& y) {
    return x.overlap > y.overlap;
  });
  std::vector<int32_t> rename(static_cast<size_t>(n), -1);
  std::vector<uint8_t> taken(static_cast<size_t>(n), 0);
  for (const auto& p : pairs) {
    if (rename[static_cast<size_t>(p.from)] >= 0 || taken[static_cast<size_t>(p.to)]) continue;
    rename[static_cast<size_t>(p.from)] = p.to;
    taken[static_cast<size_t>(p.to)] = 1;
  }
  layer_placement out = fresh;
  for (auto& h : out.host_of_slot) h = rename[static_cast<size_t>(h)];
  return out;
}

// `next` with its slots ordered so that replicas already in `current` keep their slot index.
layer_placement align_slots(const layer_placement& current, const layer_placement& next,
                            int32_t experts, int32_t hosts) {
  auto in_next = held(next, experts, hosts), in_current = held(current, experts, hosts);
  auto cell = [&](const layer_placement& l, size_t s) {
    return static_cast<size_t>(l.host_of_slot[s]) * static_cast<size_t>(experts) +
           static_cast<size_t>(l.expert_of_slot[s]);
  };
  layer_placement out;
  out.expert_of_slot.assign(current.expert_of_slot.size(), -1);
  out.host_of_slot.assign(current.expert_of_slot.size(), -1);
  std::vector<size_t> open;
  for (size_t s = 0; s < current.expert_of_slot.size(); ++s) {
    if (!in_next[cell(current, s)]) {
      open.push_back(s);
      continue;
    }
    out.expert_of_slot[s] = current.expert_of_slot[s];
    out.host_of_slot[s] = current.host_of_slot[s];
  }
  size_t next_open = 0;
  for (size_t s = 0; s < next.expert_of_slot.size(); ++s) {
    if (in_current[cell(next, s)]) continue;
    out.expert_of_slot[open[next_open]] = next.expert_of_slot[s];
    out.host_of_slot[open[next_open]] = next.host_of_slot[s];
    ++next_open;
  }
  return out;
}

// Peak host time plus the cost of the replicas it loads: what a plan is chosen by.
double plan_cost(const layer_problem& p, const layer_placement& layer,
                 const layer_placement& current, double move_cost) {
  auto times = host_times(layer, {p.load.begin(), p.load.end()}, {p.hosts.begin(), p.hosts.end()});
  return max_time(times) + move_cost * static_cast<double>(moved_replicas(
                                           current, layer, p.num_experts(), p.num_hosts()));
}

// Plans one layer, starting from `current` when given.
layer_placement plan_layer(const plan_context& ctx, const std::vector<double>& load,
                           const layer_placement* current) {
  layer_problem p;
  p.load = load;
  p.hosts = ctx.hosts;
  p.node_of_host = ctx.node_of_host;
  p.num_replicas = ctx.options->num_replicas;
  if (ctx.hierarchical()) {
    if (current != nullptr) p.node_of_expert = groups_of(ctx, *current);
    if (p.node_of_expert.empty())
      p.node_of_expert = assign_groups(load, ctx.options->num_groups, ctx.node_speed);
  }
  auto fresh = plan_fresh(p, ctx.options->search_effort);
  if (current == nullptr) return fresh;

  double speed = 0.0;
  for (const auto& h : ctx.hosts) speed += h.slots > 0 ? h.speed : 0.0;
  const double total = std::accumulate(load.begin(), load.end(), 0.0);
  const double move_cost = ctx.options->move_cost * total / speed;
  auto best = relabel(ctx, fresh, *current);
  double best_cost = plan_cost(p, best, *current, move_cost);
  if (fits(p, *current)) {
    layer_state state(p, *current);
    local_search(state, {move_cost, held(*current, ctx.num_experts, p.num_hosts())});
    auto kept = state.to_layer();
    double kept_cost = plan_cost(p, kept, *current, move_cost);
    if (kept_cost <= best_cost * (1.0 + 1e-12)) best = std::move(kept), best_cost = kept_cost;
  }
  return align_slots(*current, best, ctx.num_experts, p.num_hosts());
}

}  // namespace

plan_report evaluate(const load_matrix& load, const plan_options& options, const placement& after,
                     const placement* before) {
  plan_report report;
  report.had_current = before != nullptr;
  const auto experts = static_cast<int32_t>(load[0].size());
  const auto hosts = static_cast<int32_t>(options.hosts.size());
  double mean_before = 0, max_before = 0, mean_after = 0, max_after = 0;
  for (size_t l = 0; l < load.size(); ++l) {
    auto was = before != nullptr ? before->layers[l]
                                 : naive_placement(experts, options.num_replicas, options.hosts);
    auto t0 = host_times(was, load[l], options.hosts);
    auto t1 = host_times(after.layers[l], load[l], options.hosts);
    layer_report r;
    r.balancedness_before = balancedness(t0);
    r.balancedness_after = balancedness(t1);
    r.max_time_before = max_time(t0);
    r.max_time_after = max_time(t1);
    r.moved_replicas = before != nullptr ? moved_replicas(was, after.layers[l], experts, hosts) : 0;
    mean_before += std::accumulate(t0.begin(), t0.end(), 0.0) / hosts;
    mean_after += std::accumulate(t1.begin(), t1.end(), 0.0) / hosts;
    max_before += r.max_time_before;
    max_after += r.max_time_after;
    report.moved_replicas += r.moved_replicas;
    report.layers.push_back(r);
  }
  report.balancedness_before = max_before > 0 ? mean_before / max_before : 1.0;
  report.balancedness_after = max_after > 0 ? mean_after / max_after : 1.0;
  report.bytes_moved = static_cast<double>(report.moved_replicas) * options.expert_bytes;
  return report;
}

plan_result plan(const load_matrix& load, const plan_options& options, const placement* current) {
  validate_inputs(load, options, current);
  auto ctx = make_context(load, options);
  plan_result result;
  for (size_t l = 0; l < load.size(); ++l)
    result.placement.layers.push_back(
        plan_layer(ctx, load[l], current != nullptr ? &current->layers[l] : nullptr));
  result.report = evaluate(load, options, result.placement, current);
  return result;
}

}  // namespace xmesh::placement
