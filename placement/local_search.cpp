#include "placement/local_search.hpp"

#include <algorithm>
#include <numeric>

#include "placement/repartition.hpp"

namespace xmesh::placement {

namespace {

// Hosts a split of the busiest host's replicas is tried with, least busy first.
constexpr int32_t max_split_partners = 8;

enum class move_kind : uint8_t { none, relocate, swap, retarget, split };

// One candidate move. relocate: x goes top -> g. swap: x top -> g, y g -> top.
// retarget: g's slot holding x becomes a new replica of y. split: top and g exchange replicas.
struct move {
  move_kind kind = move_kind::none;
  int32_t g = -1, x = -1, y = -1;
  repartition exchange;  // split only
  double score = 0.0;    // new peak host time plus the cost of newly loaded replicas
  double local = 0.0;    // new largest time among the hosts the move changes
};

class searcher {
 public:
  searcher(layer_state& state, const search_options& options)
      : s_(state), p_(state.problem()), opt_(options) {
    for (int32_t e = 0; e < p_.num_experts(); ++e) max_rep_.push_back(p_.max_replicas(e));
    order_.resize(static_cast<size_t>(p_.num_hosts()));
    heavier_.resize(static_cast<size_t>(p_.num_experts()));
  }

  /// Candidate moves evaluated so far (a machine-independent measure of effort).
  [[nodiscard]] int64_t work() const { return work_; }

  bool step() {
    std::iota(order_.begin(), order_.end(), 0);
    std::stable_sort(order_.begin(), order_.end(),
                     [&](int32_t a, int32_t b) { return s_.time(a) > s_.time(b); });
    top_ = order_[0];
    t_top_ = s_.time(top_);
    eps_ = 1e-9 * t_top_;
    if (t_top_ <= 0.0) return false;
    best_ = move{};
    index_replicated();
    pair_moves();
    retargets_of_top_experts();
    retargets_of_top_slots();
    if (best_.kind == move_kind::none) splits();  // the costly move, only when the rest fail
    if (best_.kind == move_kind::none) return false;
    apply(best_);
    return true;
  }

 private:
  [[nodiscard]] double speed(int32_t h) const { return p_.hosts[static_cast<size_t>(h)].speed; }

  // 1 when (h, e) was not held originally, so placing e on h loads a new replica.
  [[nodiscard]] int32_t fresh(int32_t h, int32_t e) const {
    if (opt_.original.empty()) return 0;
    return opt_.original[static_cast<size_t>(h) * static_cast<size_t>(p_.num_experts()) +
                         static_cast<size_t>(e)]
               ? 0
               : 1;
  }

  // Largest time among hosts the move leaves alone (order_ is sorted, so this is a short scan).
  template <class Changed>
  [[nodiscard]] double unchanged_max(Changed changed) const {
    for (int32_t h : order_)
      if (!changed(h)) return s_.time(h);
    return 0.0;
  }

  void offer(move m, double local, double others, int32_t new_replicas) {
    ++work_;
    if (local >= t_top_ - eps_) return;  // the busiest host must get strictly less busy
    double cost = opt_.move_cost * new_replicas;
    if (new_replicas > 0 && t_top_ - local < cost) return;  // the move does not pay for its bytes
    m.local = local;
    m.score = std::max(local, others) + cost;
    if (best_.kind == move_kind::none || m.score < best_.score - eps_ ||
        (m.score <= best_.score + eps_ && m.local < best_.local - eps_))
      best_ = m;
  }

  void pair_moves() {
    for (int32_t x : s_.experts_on(top_)) {
      double u = s_.replica_load(x);
      for (int32_t g : order_) {
        if (g == top_ || s_.holds(g, x) || !p_.allowed(g, x)) continue;
        double t_g = s_.time(g);
        if (t_g >= t_top_ - eps_) continue;
        double others = unchanged_max([&](int32_t h) { return h == top_ || h == g; });
        if (s_.free_slots(g) > 0)
          offer({move_kind::relocate, g, x, -1, {}},
                std::max(t_top_ - u / speed(top_), t_g + u / speed(g)), others,
                fresh(g, x) - fresh(top_, x));
        for (int32_t y : s_.experts_on(g)) {
          double d = u - s_.replica_load(y);
          if (d <= 0.0 || s_.holds(top_, y) || !p_.allowed(top_, y)) continue;
          offer({move_kind::swap, g, x, y, {}},
                std::max(t_top_ - d / speed(top_), t_g + d / speed(g)), others,
                fresh(g, x) + fresh(top_, y) - fresh(top_, x) - fresh(g, y));
        }
      }
    }
  }

  // The two largest times a's holders would have if a lost a replica elsewhere.
  struct heavier {
    double max1 = 0.0, max2 = 0.0;
    int32_t host1 = -1, host2 = -1;
  };

  void index_replicated() {
    replicated_.clear();
    for (int32_t a = 0; a < p_.num_experts(); ++a) {
      int32_t c = s_.count(a);
      if (c < 2) continue;
      replicated_.push_back(a);
      double wa = p_.load[static_cast<size_t>(a)], da = wa / (c - 1) - wa / c;
      heavier h;
      for (int32_t k : s_.hosts_of(a)) {
        double t = s_.time(k) + da / speed(k);
        if (h.host1 < 0 || t > h.max1) {
          h.max2 = h.max1, h.host2 = h.host1, h.max1 = t, h.host1 = k;
        } else if (h.host2 < 0 || t > h.max2) {
          h.max2 = t, h.host2 = k;
        }
      }
      heavier_[static_cast<size_t>(a)] = h;
    }
  }

  // Largest new time among the hosts that retarget(g: a -> b) changes.
  [[nodiscard]] double retarget_local(int32_t g, int32_t a, int32_t b) const {
    double wa = p_.load[static_cast<size_t>(a)], wb = p_.load[static_cast<size_t>(b)];
    int32_t ca = s_.count(a), cb = s_.count(b);
    double da = wa / (ca - 1) - wa / ca;               // each remaining replica of a gets heavier
    double db = cb > 0 ? wb / (cb + 1) - wb / cb : 0;  // each replica of b gets lighter
    double local = s_.time(g) + (wb / (cb + 1) - wa / ca) / speed(g);
    for (int32_t k : s_.hosts_of(a)) {
      if (k == g) continue;
      local = std::max(local, s_.time(k) + (da + (s_.holds(k, b) ? db : 0.0)) / speed(k));
    }
    for (int32_t k : s_.hosts_of(b))
      if (!s_.holds(k, a)) local = std::max(local, s_.time(k) + db / speed(k));
    return local;
  }

  // Cheap necessary conditions first: g itself, and a's other replicas getting heavier.
  [[nodiscard]] bool retarget_hopeless(int32_t g, int32_t a, int32_t b) const {
    double wa = p_.load[static_cast<size_t>(a)], wb = p_.load[static_cast<size_t>(b)];
    double t_g = s_.time(g) + (wb / (s_.count(b) + 1) - wa / s_.count(a)) / speed(g);
    if (t_g >= t_top_ - eps_) return true;
    const auto& h = heavier_[static_cast<size_t>(a)];
    auto [t, k] = h.host1 != g ? std::pair{h.max1, h.host1} : std::pair{h.max2, h.host2};
    return k >= 0 && t >= t_top_ - eps_ && !s_.holds(k, b);
  }

  void offer_retarget(int32_t g, int32_t a, int32_t b) {
    ++work_;
    if (retarget_hopeless(g, a, b)) return;
    double local = retarget_local(g, a, b);
    if (local >= t_top_ - eps_) return;
    double others =
        unchanged_max([&](int32_t h) { return h == g || s_.holds(h, a) || s_.holds(h, b); });
    offer({move_kind::retarget, g, a, b, {}}, local, others, fresh(g, b) - fresh(g, a));
  }

  // More replicas for an expert on the busiest host, taken from a replicated expert elsewhere.
  void retargets_of_top_experts() {
    for (int32_t b : s_.experts_on(top_)) {
      if (s_.count(b) >= max_rep_[static_cast<size_t>(b)]) continue;
      for (int32_t a : replicated_) {
        if (a == b) continue;
        for (int32_t g : s_.hosts_of(a))
          if (!s_.holds(g, b) && p_.allowed(g, b)) offer_retarget(g, a, b);
      }
    }
  }

  // A slot of the busiest host given to another expert, its old expert keeping other replicas.
  void retargets_of_top_slots() {
    for (int32_t a : s_.experts_on(top_)) {
      if (s_.count(a) < 2) continue;
      for (int32_t b = 0; b < p_.num_experts(); ++b) {
        if (s_.holds(top_, b) || !p_.allowed(top_, b)) continue;
        if (s_.count(b) >= max_rep_[static_cast<size_t>(b)]) continue;
        offer_retarget(top_, a, b);
      }
    }
  }

  // Pools the busiest host's replicas with a lightly loaded host's and splits them again
  // optimally. Only the least busy hosts are tried: they have the room a better split needs.
  void splits() {
    int32_t tried = 0;
    for (auto it = order_.rbegin(); it != order_.rend() && tried < max_split_partners; ++it) {
      int32_t g = *it;
      if (g == top_ || s_.time(g) >= t_top_ - eps_) continue;
      ++tried;
      work_ += 256;  // a split enumerates up to 2^12 subsets: weigh it in the work count
      move m{move_kind::split, g, -1, -1, {}};
      if (!best_repartition(s_, top_, g, opt_.original, opt_.move_cost, m.exchange)) continue;
      double others = unchanged_max([&](int32_t h) { return h == top_ || h == g; });
      double local = m.exchange.local;
      int32_t new_replicas = m.exchange.new_replicas;
      offer(std::move(m), local, others, new_replicas);
    }
  }

  void apply(const move& m) {
    switch (m.kind) {
      case move_kind::relocate:
        s_.relocate(m.x, top_, m.g);
        break;
      case move_kind::swap:
        s_.relocate(m.x, top_, m.g);
        s_.relocate(m.y, m.g, top_);
        break;
      case move_kind::retarget:
        s_.retarget(m.g, m.x, m.y);
        break;
      case move_kind::split:
        for (int32_t e : m.exchange.to_g) s_.relocate(e, top_, m.g);
        for (int32_t e : m.exchange.to_h) s_.relocate(e, m.g, top_);
        break;
      case move_kind::none:
        break;
    }
  }

  layer_state& s_;
  const layer_problem& p_;
  const search_options& opt_;
  std::vector<int32_t> max_rep_;
  std::vector<int32_t> order_;
  std::vector<int32_t> replicated_;  // experts with at least two replicas
  std::vector<heavier> heavier_;     // per replicated expert, refreshed every step
  int32_t top_ = 0;
  double t_top_ = 0.0;
  double eps_ = 0.0;
  move best_;
  int64_t work_ = 0;
};

}  // namespace

int64_t local_search(layer_state& state, const search_options& options, int64_t* work) {
  searcher search(state, options);
  // Each move strictly lowers the sorted host times, so this ends; the cap guards against
  // floating-point surprises only.
  const int64_t cap = 50LL * state.problem().num_replicas + 1000;
  int64_t steps = 0;
  while (steps < cap && search.step()) ++steps;
  state.refresh_times();
  if (work != nullptr) *work += search.work() + 1;
  return steps;
}

}  // namespace xmesh::placement
