// Iterated local search: kicks out of local optima that single improving moves cannot leave.
#include <algorithm>
#include <random>

#include "placement/local_search.hpp"

namespace xmesh::placement {

namespace {

// What a placement is judged by when comparing local optima: the peak first, then the spread.
struct quality {
  double peak = 0.0;
  double squares = 0.0;
};

quality measure(const layer_state& s) {
  quality q;
  for (double t : s.times()) {
    q.peak = std::max(q.peak, t);
    q.squares += t * t;
  }
  return q;
}

bool better(const quality& a, const quality& b) {
  double eps = 1e-9 * b.peak;
  if (a.peak < b.peak - eps) return true;
  return a.peak <= b.peak + eps && a.squares < b.squares * (1.0 - 1e-12);
}

class kicker {
 public:
  kicker(layer_state& s, uint32_t seed) : s_(s), p_(s.problem()), rng_(seed) {
    for (int32_t e = 0; e < p_.num_experts(); ++e) max_rep_.push_back(p_.max_replicas(e));
  }

  // One random change that keeps the placement valid; false when the draw found none.
  bool kick() { return pick(2) == 0 ? swap() : retarget(); }

 private:
  int32_t pick(int32_t n) { return std::uniform_int_distribution<int32_t>(0, n - 1)(rng_); }

  // The busiest host trades one replica with a random other host.
  bool swap() {
    int32_t h = busiest();
    int32_t g = pick(p_.num_hosts());
    const auto& on_h = s_.experts_on(h);
    const auto& on_g = s_.experts_on(g);
    if (g == h || on_h.empty() || on_g.empty()) return false;
    int32_t x = on_h[static_cast<size_t>(pick(static_cast<int32_t>(on_h.size())))];
    int32_t y = on_g[static_cast<size_t>(pick(static_cast<int32_t>(on_g.size())))];
    if (s_.holds(g, x) || s_.holds(h, y) || !p_.allowed(g, x) || !p_.allowed(h, y)) return false;
    s_.relocate(x, h, g);
    s_.relocate(y, g, h);
    return true;
  }

  // A random replicated expert gives one slot to an expert of the busiest host.
  bool retarget() {
    int32_t h = busiest();
    const auto& on_h = s_.experts_on(h);
    if (on_h.empty()) return false;
    int32_t b = on_h[static_cast<size_t>(pick(static_cast<int32_t>(on_h.size())))];
    int32_t a = pick(p_.num_experts());
    if (a == b || s_.count(a) < 2 || s_.count(b) >= max_rep_[static_cast<size_t>(b)]) return false;
    const auto& hosts = s_.hosts_of(a);
    int32_t g = hosts[static_cast<size_t>(pick(static_cast<int32_t>(hosts.size())))];
    if (s_.holds(g, b) || !p_.allowed(g, b)) return false;
    s_.retarget(g, a, b);
    return true;
  }

  int32_t busiest() const {
    const auto& t = s_.times();
    return static_cast<int32_t>(std::max_element(t.begin(), t.end()) - t.begin());
  }

  layer_state& s_;
  const layer_problem& p_;
  std::mt19937 rng_;
  std::vector<int32_t> max_rep_;
};

}  // namespace

void iterated_search(layer_state& state, int64_t work_budget, uint32_t seed) {
  int64_t work = 0;
  local_search(state, {}, &work);
  layer_state best = state;
  quality best_q = measure(best), here_q = best_q;
  kicker kicks(state, seed);
  // Walk from local optimum to local optimum, accepting ties so plateaus get explored; the kicks
  // grow from one to three changes as the walk goes on.
  for (int64_t round = 0; work < work_budget; ++round) {
    layer_state before = state;
    int32_t changes = 1 + static_cast<int32_t>(round % 3), made = 0;
    for (int32_t tries = 0; made < changes && tries < 8 * changes; ++tries) made += kicks.kick();
    local_search(state, {}, &work);
    work += state.problem().num_hosts();
    auto q = measure(state);
    if (better(q, best_q)) best = state, best_q = q;
    if (better(here_q, q)) {
      state = before;  // worse than where it started: step back
    } else {
      here_q = q;
    }
  }
  state = best;
}

}  // namespace xmesh::placement
