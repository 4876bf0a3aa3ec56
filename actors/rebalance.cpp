#include "actors/rebalance.hpp"

#include <algorithm>
#include <limits>
#include <set>

#include "placement/planner.hpp"

namespace xmesh::actors {

namespace {

std::vector<double> layer_load(const placement_table& t, const rebalance_inputs& in, int64_t l) {
  return {in.tokens.begin() + l * t.num_experts, in.tokens.begin() + (l + 1) * t.num_experts};
}

std::vector<placement::host_spec> host_specs(const placement_table& t, const rebalance_inputs& in,
                                             int64_t layer) {
  std::vector<placement::host_spec> hosts(t.nodes.size());
  std::vector<int32_t> current(t.nodes.size(), 0);
  for (int64_t e = 0; e < t.num_experts; ++e)
    for (int32_t n : t.replicas(layer, e)) ++current[n];
  for (size_t n = 0; n < hosts.size(); ++n) {
    // Budgets hold every layer's replicas; a layer gets an even share (never less than now).
    int64_t share = in.capacity[n] / std::max<int64_t>(1, t.num_layers);
    hosts[n].slots = static_cast<int32_t>(
        std::max<int64_t>(current[n], std::min<int64_t>(share, t.num_experts)));
    hosts[n].speed = in.speed.empty() || in.speed[n] <= 0 ? 1.0 : in.speed[n];
  }
  return hosts;
}

// Adds replicas of the experts with the most load per replica, each on the least busy host
// with room that lacks it, until the layer has `target` slots or nothing fits.
void grow(placement::layer_placement& layer, const std::vector<double>& load,
          const std::vector<placement::host_spec>& hosts, int32_t target) {
  const auto num_experts = static_cast<int32_t>(load.size());
  while (static_cast<int32_t>(layer.expert_of_slot.size()) < target) {
    auto counts = placement::replica_counts(layer, num_experts);
    auto times = placement::host_times(layer, load, hosts);
    std::vector<int32_t> used(hosts.size(), 0);
    std::set<std::pair<int32_t, int32_t>> held;  // (host, expert)
    for (size_t s = 0; s < layer.host_of_slot.size(); ++s) {
      ++used[layer.host_of_slot[s]];
      held.insert({layer.host_of_slot[s], layer.expert_of_slot[s]});
    }
    int32_t best_e = -1, best_h = -1;
    double best_share = -1;
    for (int32_t e = 0; e < num_experts; ++e) {
      double share = load[e] / std::max(1, counts[e]);
      if (share <= best_share) continue;
      int32_t h_best = -1;
      for (int32_t h = 0; h < static_cast<int32_t>(hosts.size()); ++h)
        if (used[h] < hosts[h].slots && !held.count({h, e}) &&
            (h_best < 0 || times[h] < times[h_best]))
          h_best = h;
      if (h_best < 0) continue;
      best_e = e, best_h = h_best, best_share = share;
    }
    if (best_e < 0) return;
    layer.expert_of_slot.push_back(best_e);
    layer.host_of_slot.push_back(best_h);
  }
}

double ratio(double mean_sum, double max_sum) { return max_sum > 0 ? mean_sum / max_sum : 1.0; }

void accumulate(const placement::layer_placement& layer, const std::vector<double>& load,
                const std::vector<placement::host_spec>& hosts, double& mean_sum, double& max_sum) {
  auto times = placement::host_times(layer, load, hosts);
  double total = 0;
  for (double t : times) total += t;
  mean_sum += total / static_cast<double>(times.size());
  max_sum += placement::max_time(times);
}

}  // namespace

double seconds_per_row(const host_speed& h, double round_trip_s) {
  if (h.rows == 0 || h.compute_s <= 0) return 0;
  double compute = h.compute_s / static_cast<double>(h.rows);
  if (h.frames == 0 || round_trip_s <= 0) return compute;
  double rows_per_frame = static_cast<double>(h.rows) / static_cast<double>(h.frames);
  double overhead = std::max(0.0, round_trip_s - h.service_s / static_cast<double>(h.frames));
  return compute + overhead / rows_per_frame;
}

std::vector<double> relative_speeds(const std::vector<double>& seconds_per_row) {
  double sum = 0, count = 0;
  for (double s : seconds_per_row)
    if (s > 0) sum += 1 / s, count += 1;
  std::vector<double> out;
  for (double s : seconds_per_row)
    out.push_back(s > 0 && count > 0 ? (1 / s) / (sum / count) : 1.0);
  return out;
}

placement::layer_placement to_layer_placement(const placement_table& t, int64_t layer) {
  placement::layer_placement out;
  for (int64_t e = 0; e < t.num_experts; ++e)
    for (int32_t n : t.replicas(layer, e)) {
      out.expert_of_slot.push_back(static_cast<int32_t>(e));
      out.host_of_slot.push_back(n);
    }
  return out;
}

double measure_balancedness(const placement_table& t, const rebalance_inputs& in) {
  double mean_sum = 0, max_sum = 0;
  for (int64_t l : in.moe_layers)
    accumulate(to_layer_placement(t, l), layer_load(t, in, l), host_specs(t, in, l), mean_sum,
               max_sum);
  return ratio(mean_sum, max_sum);
}

rebalance_plan plan_rebalance(const placement_table& t, const rebalance_inputs& in) {
  rebalance_plan out;
  std::vector<move_order> retires, migrates, replicates;
  double mean_before = 0, max_before = 0, mean_after = 0, max_after = 0;
  const auto num_hosts = static_cast<int32_t>(t.nodes.size());
  for (int64_t l : in.moe_layers) {
    auto load = layer_load(t, in, l);
    auto hosts = host_specs(t, in, l);
    auto current = to_layer_placement(t, l);
    accumulate(current, load, hosts, mean_before, max_before);
    double total = 0;
    for (double x : load) total += x;
    if (total <= 0) {  // no traffic measured: nothing to learn, nothing to move
      accumulate(current, load, hosts, mean_after, max_after);
      continue;
    }
    int32_t room = 0;
    for (const auto& h : hosts) room += h.slots;
    int64_t target = in.replicas_per_layer > 0 ? in.replicas_per_layer : t.num_experts + num_hosts;
    auto slots = static_cast<int32_t>(
        std::clamp<int64_t>(target, static_cast<int64_t>(current.expert_of_slot.size()), room));
    grow(current, load, hosts, slots);
    placement::plan_options o;
    o.num_replicas = static_cast<int32_t>(current.expert_of_slot.size());
    o.hosts = hosts;
    o.move_cost = in.hysteresis;
    placement::placement cur{{current}};
    auto result = placement::plan({load}, o, &cur);
    const auto& planned = result.placement.layers.front();
    accumulate(planned, load, hosts, mean_after, max_after);
    std::vector<std::set<int32_t>> want(t.num_experts);
    for (size_t s = 0; s < planned.expert_of_slot.size(); ++s)
      want[planned.expert_of_slot[s]].insert(planned.host_of_slot[s]);
    for (int64_t e = 0; e < t.num_experts; ++e) {
      auto have_span = t.replicas(l, e);
      std::set<int32_t> have(have_span.begin(), have_span.end());
      std::vector<int32_t> added, removed;
      std::set_difference(want[e].begin(), want[e].end(), have.begin(), have.end(),
                          std::back_inserter(added));
      std::set_difference(have.begin(), have.end(), want[e].begin(), want[e].end(),
                          std::back_inserter(removed));
      size_t pairs = std::min(added.size(), removed.size());
      for (size_t i = 0; i < pairs; ++i)
        migrates.push_back({move_order::migrate, l, e, t.nodes[removed[i]], t.nodes[added[i]]});
      for (size_t i = pairs; i < added.size(); ++i)
        replicates.push_back({move_order::replicate, l, e, "", t.nodes[added[i]]});
      for (size_t i = pairs; i < removed.size(); ++i)
        retires.push_back({move_order::retire, l, e, t.nodes[removed[i]], ""});
    }
  }
  out.orders = std::move(retires);
  out.orders.insert(out.orders.end(), migrates.begin(), migrates.end());
  out.orders.insert(out.orders.end(), replicates.begin(), replicates.end());
  out.balancedness_before = ratio(mean_before, max_before);
  out.balancedness_after = ratio(mean_after, max_after);
  return out;
}

}  // namespace xmesh::actors
