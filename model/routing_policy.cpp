#include "model/routing_policy.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "kernels/ops.hpp"

namespace xmesh::model {

namespace {

using preference = routing_options::preference;
using eviction = routing_options::eviction;

constexpr const char* preference_names[] = {"off", "max_rank", "cumulative", "prior"};
constexpr const char* eviction_names[] = {"lru", "lfu", "activation"};

[[noreturn]] void bad(const std::string& key, const std::string& what) {
  throw std::runtime_error("routing policy: " + key + ": " + what);
}

double number(const std::string& key, const std::string& value) {
  try {
    size_t used = 0;
    double v = std::stod(value, &used);
    if (used == value.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  bad(key, "expected a number, got '" + value + "'");
}

template <size_t N>
int choice(const std::string& key, const std::string& value, const char* const (&names)[N]) {
  for (size_t i = 0; i < N; ++i)
    if (value == names[i]) return static_cast<int>(i);
  std::string all;
  for (const char* n : names) all += (all.empty() ? "" : ", ") + std::string(n);
  bad(key, "unknown '" + value + "' (expected " + all + ")");
}

}  // namespace

std::string routing_options::text() const {
  if (!enabled) return "exact";
  std::ostringstream s;
  s << "cache_aware=" << preference_names[static_cast<int>(prefer)];
  if (prefer == preference::max_rank) s << ",max_rank=" << max_rank;
  if (prefer == preference::cumulative) s << ",cumulative=" << cumulative;
  if (prefer == preference::prior) s << ",prior=" << prior;
  if (skip_below > 0) s << ",skip_below=" << skip_below;
  s << ",cache=" << eviction_names[static_cast<int>(cache)] << ",cache_fraction=" << cache_fraction;
  if (cache == eviction::activation) s << ",decay=" << decay;
  if (load_rank > 0) s << ",load_rank=" << load_rank;
  return s.str();
}

routing_options parse_routing_options(const std::string& spec, const model_config& c) {
  routing_options o;
  if (spec.empty() || spec == "exact") return o;
  o.enabled = true;
  std::istringstream in(spec);
  std::string item;
  bool rank_set = false, cumulative_set = false, prior_set = false;
  while (std::getline(in, item, ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos) bad(item, "expected key=value");
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "cache_aware") {
      o.prefer = static_cast<preference>(choice(key, value, preference_names));
    } else if (key == "max_rank") {
      double v = number(key, value);
      if (v != std::floor(v) || v < c.top_k || v > c.num_experts)
        bad(key, "expected an integer in [" + std::to_string(c.top_k) + ", " +
                     std::to_string(c.num_experts) + "] (top_k to the experts per layer)");
      o.max_rank = static_cast<int64_t>(v), rank_set = true;
    } else if (key == "cumulative") {
      o.cumulative = number(key, value), cumulative_set = true;
      if (!(o.cumulative > 0 && o.cumulative <= 1)) bad(key, "expected a probability in (0, 1]");
    } else if (key == "prior") {
      o.prior = number(key, value), prior_set = true;
      if (o.prior < 0) bad(key, "must not be negative (it is added to resident experts' logits)");
    } else if (key == "skip_below") {
      o.skip_below = number(key, value);
      if (!(o.skip_below >= 0 && o.skip_below < 1)) bad(key, "expected a share in [0, 1)");
    } else if (key == "cache") {
      o.cache = static_cast<eviction>(choice(key, value, eviction_names));
    } else if (key == "cache_fraction") {
      o.cache_fraction = number(key, value);
      if (!(o.cache_fraction > 0 && o.cache_fraction <= 1))
        bad(key, "expected a fraction in (0, 1]");
    } else if (key == "load_rank") {
      double v = number(key, value);
      if (v != std::floor(v) || v < 1 || v > c.top_k)
        bad(key, "expected an integer in [1, " + std::to_string(c.top_k) + "] (1 to top_k)");
      o.load_rank = static_cast<int64_t>(v);
    } else if (key == "decay") {
      o.decay = number(key, value);
      if (!(o.decay > 0 && o.decay <= 1)) bad(key, "expected a factor in (0, 1]");
    } else {
      bad(key,
          "unknown key (expected cache_aware, max_rank, cumulative, prior, skip_below, cache, "
          "cache_fraction, decay, load_rank)");
    }
  }
  if (o.prefer == preference::max_rank && !rank_set)
    o.max_rank = std::min<int64_t>(2 * c.top_k, c.num_experts);
  if (o.prefer == preference::cumulative && !cumulative_set) o.cumulative = 0.9;
  if (o.prefer == preference::prior && !prior_set) o.prior = 1.0;
  if (std::llround(o.cache_fraction * static_cast<double>(c.num_experts)) < c.top_k) {
    std::ostringstream what;
    what << "a cache of " << o.cache_fraction << " x " << c.num_experts
         << " experts holds fewer than top_k (" << c.top_k << ")";
    bad("cache_fraction", what.str());
  }
  return o;
}

expert_cache_model::expert_cache_model(const model_config& c, const routing_options& o)
    : layers_(c.num_layers, std::vector<entry>(c.num_experts)),
      resident_count_(c.num_layers, 0),
      capacity_(std::max<int64_t>(
          1, std::llround(o.cache_fraction * static_cast<double>(c.num_experts)))),
      eviction_(o.cache),
      decay_(o.cache == eviction::lfu ? 1.0 : o.decay),
      load_rank_(o.load_rank) {}

bool expert_cache_model::resident(int64_t layer, int32_t expert) const {
  return layers_[layer][expert].resident;
}

void expert_cache_model::touch(int64_t layer, const int32_t* experts, int64_t count) {
  auto& l = layers_[layer];
  ++clock_;
  if (eviction_ != eviction::lru)
    for (auto& e : l) e.score *= decay_;
  for (int64_t i = 0; i < count; ++i) {  // the token's own experts are never the victim
    l[experts[i]].score += 1;
    l[experts[i]].last_use = clock_;
  }
  for (int64_t i = 0; i < count; ++i) {
    auto& e = l[experts[i]];
    if (e.resident || (load_rank_ > 0 && i >= load_rank_)) continue;
    if (resident_count_[layer] == capacity_) {
      // Evict the resident expert not used by this token with the lowest score (LRU: the
      // oldest use), ties to the older use, then the lower id.
      int64_t victim = -1;
      auto key = [&](const entry& x) {
        return eviction_ == eviction::lru ? std::pair<double, int64_t>(double(x.last_use), 0)
                                          : std::pair<double, int64_t>(x.score, x.last_use);
      };
      for (int64_t v = 0; v < static_cast<int64_t>(l.size()); ++v)
        if (l[v].resident && l[v].last_use != clock_ && (victim < 0 || key(l[v]) < key(l[victim])))
          victim = v;
      if (victim < 0) continue;  // every resident expert serves this token
      l[victim].resident = false;
      --resident_count_[layer];
    }
    e.resident = true;
    ++resident_count_[layer];
  }
}

void route_with_policy(const model_config& c, const routing_options& o, expert_cache_model& cache,
                       int64_t layer, const float* logits, int64_t num_tokens, int32_t* ids,
                       float* weights, routing_counters& counters, uint8_t* missed) {
  const int64_t experts = c.num_experts, k = c.top_k;
  std::vector<float> p(experts), biased(experts);
  std::vector<int32_t> rank(experts), chosen;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = logits + t * experts;
    std::copy(row, row + experts, p.begin());
    kernels::softmax(p.data(), experts);
    // Ranked by probability, ties to the lower id (as exact top-k ranks them).
    std::iota(rank.begin(), rank.end(), 0);
    std::stable_sort(rank.begin(), rank.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    chosen.clear();
    auto prefer_resident = [&](int64_t candidates) {
      for (int64_t i = 0; i < candidates && std::ssize(chosen) < k; ++i)
        if (cache.resident(layer, rank[i])) chosen.push_back(rank[i]);
      for (int64_t i = 0; i < experts && std::ssize(chosen) < k; ++i)
        if (std::find(chosen.begin(), chosen.end(), rank[i]) == chosen.end())
          chosen.push_back(rank[i]);
    };
    switch (o.prefer) {
      case preference::off:
        chosen.assign(rank.begin(), rank.begin() + k);
        break;
      case preference::max_rank:
        prefer_resident(o.max_rank);
        break;
      case preference::cumulative: {
        int64_t n = 0;
        double mass = 0;
        while (n < experts && (n < k || mass < o.cumulative)) mass += p[rank[n++]];
        prefer_resident(n);
        break;
      }
      case preference::prior: {
        for (int64_t e = 0; e < experts; ++e)
          biased[e] =
              row[e] + (cache.resident(layer, static_cast<int32_t>(e)) ? float(o.prior) : 0.0f);
        std::vector<int32_t> by_bias(rank);
        std::stable_sort(by_bias.begin(), by_bias.end(), [&](int32_t a, int32_t b) {
          return biased[a] > biased[b] || (biased[a] == biased[b] && a < b);
        });
        chosen.assign(by_bias.begin(), by_bias.begin() + k);
        break;
      }
    }
    // Highest probability first (ties: lower id), so skipping drops the smallest weights.
    std::stable_sort(chosen.begin(), chosen.end(),
                     [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    // Weights from the router's own probabilities (a prior biases the choice, not the mix).
    int32_t* out_ids = ids + t * k;
    float* w = weights + t * k;
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += p[chosen[j]];
    int64_t kept = k;
    if (o.skip_below > 0)  // dynamic top-k: the smallest shares go, the first always stays
      while (kept > 1 && p[chosen[kept - 1]] / sum < o.skip_below) --kept;
    float kept_sum = 0;
    for (int64_t j = 0; j < kept; ++j) kept_sum += p[chosen[j]];
    for (int64_t j = 0; j < k; ++j) {
      out_ids[j] = j < kept ? chosen[j] : -1;
      w[j] = j < kept ? (c.norm_topk_prob ? p[chosen[j]] / kept_sum : p[chosen[j]]) : 0.0f;
    }
    int64_t hits = 0;
    for (int64_t j = 0; j < k; ++j) {
      const bool hit = j < kept && cache.resident(layer, chosen[j]);
      hits += hit;
      if (missed) missed[t * k + j] = j < kept && !hit;
    }
    cache.touch(layer, chosen.data(), kept);
    counters.routed += kept;
    counters.hits += hits;
    counters.skipped += k - kept;
  }
}

}  // namespace xmesh::model
