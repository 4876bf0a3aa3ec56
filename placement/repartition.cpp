#include "placement/repartition.hpp"

#include <algorithm>
#include <bit>

namespace xmesh::placement {

namespace {

// The replicas in play. An expert on both hosts stays on both. Of the others, each host puts at
// most half the pool's width in play, its lightest ones (they give the finest adjustments); the
// rest stay where they are and only count towards that host's time and slots.
struct pool {
  std::vector<int32_t> items;
  double fixed_load_h = 0.0, fixed_load_g = 0.0;  // per-replica loads that stay put
  int32_t fixed_h = 0, fixed_g = 0;               // slots they hold
  uint32_t now_on_h = 0;                          // bit i: item i is on h now
  uint32_t only_h = 0;                            // bit i: item i may not go to g
  uint32_t only_g = 0;                            // bit i: item i may not go to h
};

// Adds `host`'s replicas that `other` does not hold: the lightest in play, the rest fixed.
void take(const layer_state& s, int32_t host, int32_t other, bool is_h, pool& out) {
  std::vector<int32_t> own;
  for (int32_t e : s.experts_on(host)) {
    if (!s.holds(other, e)) {
      own.push_back(e);
      continue;
    }
    (is_h ? out.fixed_load_h : out.fixed_load_g) += s.replica_load(e);
    ++(is_h ? out.fixed_h : out.fixed_g);
  }
  std::stable_sort(own.begin(), own.end(), [&](int32_t a, int32_t b) {
    return s.replica_load(a) < s.replica_load(b) ||
           (s.replica_load(a) == s.replica_load(b) && a < b);
  });
  const auto& p = s.problem();
  for (size_t i = 0; i < own.size(); ++i) {
    int32_t e = own[i];
    if (i >= static_cast<size_t>(max_pooled_replicas / 2)) {
      (is_h ? out.fixed_load_h : out.fixed_load_g) += s.replica_load(e);
      ++(is_h ? out.fixed_h : out.fixed_g);
      continue;
    }
    uint32_t bit = 1u << out.items.size();
    if (is_h) out.now_on_h |= bit;
    if (!p.allowed(other, e)) (is_h ? out.only_h : out.only_g) |= bit;
    out.items.push_back(e);
  }
}

pool make_pool(const layer_state& s, int32_t h, int32_t g) {
  pool out;
  take(s, h, g, true, out);
  take(s, g, h, false, out);
  return out;
}

}  // namespace

bool best_repartition(const layer_state& s, int32_t h, int32_t g,
                      const std::vector<uint8_t>& original, double move_cost, repartition& out) {
  const auto& p = s.problem();
  const auto pl = make_pool(s, h, g);
  const auto n = static_cast<int32_t>(pl.items.size());
  if (n == 0) return false;
  const auto experts = static_cast<size_t>(p.num_experts());
  auto fresh = [&](int32_t host, int32_t e) {
    return original.empty() ||
                   original[static_cast<size_t>(host) * experts + static_cast<size_t>(e)]
               ? 0
               : 1;
  };
  const uint32_t masks = 1u << n;
  // load[m], fresh_on_h[m], fresh_on_g[m]: sums over the items of m, built from m minus its
  // lowest bit.
  std::vector<double> load(masks, 0.0);
  std::vector<int32_t> new_h(masks, 0), new_g(masks, 0), size(masks, 0);
  for (uint32_t m = 1; m < masks; ++m) {
    auto i = static_cast<size_t>(std::countr_zero(m));
    size[m] = size[m & (m - 1)] + 1;
    load[m] = load[m & (m - 1)] + s.replica_load(pl.items[i]);
    new_h[m] = new_h[m & (m - 1)] + fresh(h, pl.items[i]);
    new_g[m] = new_g[m & (m - 1)] + fresh(g, pl.items[i]);
  }
  const uint32_t all = masks - 1;
  const int32_t now = new_h[pl.now_on_h] + new_g[all & ~pl.now_on_h];
  const double s_h = p.hosts[static_cast<size_t>(h)].speed;
  const double s_g = p.hosts[static_cast<size_t>(g)].speed;
  const int32_t cap_h = p.hosts[static_cast<size_t>(h)].slots - pl.fixed_h;
  const int32_t cap_g = p.hosts[static_cast<size_t>(g)].slots - pl.fixed_g;
  bool found = false;
  double best_score = 0.0;
  uint32_t best = 0;
  for (uint32_t m = 0; m < masks; ++m) {  // bit set: the item ends on h
    if (m == pl.now_on_h || (m & pl.only_g) != 0 || (~m & all & pl.only_h) != 0) continue;
    int32_t on_h = size[m];
    if (on_h > cap_h || n - on_h > cap_g) continue;
    double local =
        std::max((pl.fixed_load_h + load[m]) / s_h, (pl.fixed_load_g + load[all & ~m]) / s_g);
    int32_t delta = new_h[m] + new_g[all & ~m] - now;
    double score = local + move_cost * delta;
    if (!found || score < best_score) found = true, best_score = score, best = m;
  }
  if (!found) return false;
  out = repartition{};
  for (int32_t i = 0; i < n; ++i) {
    bool ends_on_h = (best >> i) & 1u, was_on_h = (pl.now_on_h >> i) & 1u;
    if (ends_on_h && !was_on_h) out.to_h.push_back(pl.items[static_cast<size_t>(i)]);
    if (!ends_on_h && was_on_h) out.to_g.push_back(pl.items[static_cast<size_t>(i)]);
  }
  out.local =
      std::max((pl.fixed_load_h + load[best]) / s_h, (pl.fixed_load_g + load[all & ~best]) / s_g);
  out.new_replicas = new_h[best] + new_g[all & ~best] - now;
  return true;
}

}  // namespace xmesh::placement
