// Routing policies: each switch changes routing the way it says, all off routes exactly, a policy
// routes the same in every run and batch shape, and bad knobs give one clear line.
#include "model/routing_policy.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "model/generator.hpp"
#include "model/synthetic.hpp"
#include "tests/support/temp_dir.hpp"

namespace xmesh::model {
namespace {

using testing_support::temp_dir;

model_config eight_experts_top2() {
  model_config c;
  c.num_layers = 1;
  c.num_experts = 8;
  c.top_k = 2;
  c.norm_topk_prob = true;
  return c;
}

std::string error_of(const std::string& spec) {
  try {
    parse_routing_options(spec, eight_experts_top2());
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(RoutingOptions, BadKnobsNameTheKey) {
  EXPECT_EQ(error_of("cache_aware=lucky"),
            "routing policy: cache_aware: unknown 'lucky' (expected off, max_rank, cumulative, "
            "prior)");
  EXPECT_EQ(error_of("prior=-1"),
            "routing policy: prior: must not be negative (it is added to resident experts' "
            "logits)");
  EXPECT_EQ(error_of("cumulative=1.5"),
            "routing policy: cumulative: expected a probability in (0, 1]");
  EXPECT_EQ(error_of("skip_below=1"), "routing policy: skip_below: expected a share in [0, 1)");
  EXPECT_EQ(error_of("max_rank=1"),
            "routing policy: max_rank: expected an integer in [2, 8] (top_k to the experts per "
            "layer)");
  EXPECT_EQ(
      error_of("cache_fraction=0.1"),
      "routing policy: cache_fraction: a cache of 0.1 x 8 experts holds fewer than top_k (2)");
  EXPECT_NE(error_of("cache=fifo").find("expected lru, lfu, activation"), std::string::npos);
  EXPECT_NE(error_of("colour=blue").find("colour: unknown key"), std::string::npos);
  EXPECT_NE(error_of("prior").find("expected key=value"), std::string::npos);
  EXPECT_NE(error_of("prior=abc").find("expected a number, got 'abc'"), std::string::npos);
}

TEST(RoutingOptions, SpecRoundTripsThroughItsText) {
  auto c = eight_experts_top2();
  auto o = parse_routing_options("cache_aware=max_rank,max_rank=4,cache=lfu,skip_below=0.1", c);
  EXPECT_EQ(parse_routing_options(o.text(), c).text(), o.text());
  EXPECT_EQ(parse_routing_options("exact", c).text(), "exact");
  EXPECT_FALSE(parse_routing_options("", c).enabled);
  EXPECT_EQ(parse_routing_options("cache_aware=max_rank", c).max_rank, 4);  // default 2 * top_k
}

TEST(ExpertCacheModel, LoadRankKeepsLowerRankedMissesOut) {
  auto c = eight_experts_top2();
  routing_options o;
  o.cache_fraction = 0.5;
  o.load_rank = 1;
  expert_cache_model cache(c, o);
  int32_t token[] = {3, 5};  // 3 ranks first: it enters; 5 misses below load_rank: it does not
  cache.touch(0, token, 2);
  EXPECT_TRUE(cache.resident(0, 3));
  EXPECT_FALSE(cache.resident(0, 5));
  EXPECT_NE(error_of("load_rank=3").find("load_rank: expected an integer in [1, 2]"),
            std::string::npos);
  // A miss never evicts an expert the same token uses, even one ranked after it.
  o.cache_fraction = 0.25;  // 2 experts
  expert_cache_model lru(c, o);
  int32_t b[] = {1}, cc[] = {2}, next[] = {0, 1};
  lru.touch(0, b, 1);
  lru.touch(0, cc, 1);    // resident {1, 2}, 1 the older
  lru.touch(0, next, 2);  // 0 misses and enters: it evicts 2, not the older 1 this token uses
  EXPECT_TRUE(lru.resident(0, 0));
  EXPECT_TRUE(lru.resident(0, 1));
  EXPECT_FALSE(lru.resident(0, 2));
}

TEST(ExpertCacheModel, LruEvictsTheOldestLfuTheRarest) {
  auto c = eight_experts_top2();
  routing_options o;
  o.cache_fraction = 0.25;  // 2 experts
  expert_cache_model lru(c, o);
  int32_t a[] = {0, 1}, b[] = {2}, d[] = {0};
  lru.touch(0, a, 2);
  lru.touch(0, d, 1);  // 0 is now newer than 1
  lru.touch(0, b, 1);  // evicts 1
  EXPECT_TRUE(lru.resident(0, 0));
  EXPECT_FALSE(lru.resident(0, 1));
  EXPECT_TRUE(lru.resident(0, 2));
  o.cache = routing_options::eviction::lfu;
  expert_cache_model lfu(c, o);
  int32_t one[] = {1};
  lfu.touch(0, a, 2);
  lfu.touch(0, one, 1);
  lfu.touch(0, one, 1);  // 1 used three times, 0 once
  lfu.touch(0, b, 1);    // evicts 0
  EXPECT_FALSE(lfu.resident(0, 0));
  EXPECT_TRUE(lfu.resident(0, 1));
  EXPECT_TRUE(lfu.resident(0, 2));
}

// Probabilities ranked 3 > 5 > 1 > 6 > the rest.
std::vector<float> logits_row() { return {0, 1.0f, 0, 3.0f, 0, 2.0f, 0.5f, 0}; }

TEST(RouteWithPolicy, MaxRankPrefersResidentExpertsAmongTheTopRanks) {
  auto c = eight_experts_top2();
  auto o = parse_routing_options("cache_aware=max_rank,max_rank=3,cache_fraction=0.25", c);
  expert_cache_model cache(c, o);
  int32_t warm[] = {1, 6};
  cache.touch(0, warm, 2);  // 1 (rank 3) and 6 (rank 4) resident
  routing_counters n;
  int32_t ids[2];
  float w[2];
  auto row = logits_row();
  route_with_policy(c, o, cache, 0, row.data(), 1, ids, w, n);
  // Among the top 3 (3, 5, 1) the resident 1 is taken, then the best other: 3; 6 is rank 4.
  EXPECT_EQ(ids[0], 3);
  EXPECT_EQ(ids[1], 1);
  EXPECT_NEAR(w[0] + w[1], 1.0f, 1e-6);
  EXPECT_GT(w[0], w[1]);
  EXPECT_EQ(n.hits.load(), 1);
  EXPECT_EQ(n.routed.load(), 2);
}

TEST(RouteWithPolicy, PriorBiasesTheChoiceNotTheWeights) {
  auto c = eight_experts_top2();
  auto o = parse_routing_options("cache_aware=prior,prior=2.5,cache_fraction=0.25", c);
  expert_cache_model cache(c, o);
  int32_t warm[] = {6};
  cache.touch(0, warm, 1);
  routing_counters n;
  int32_t ids[2];
  float w[2];
  auto row = logits_row();
  route_with_policy(c, o, cache, 0, row.data(), 1, ids, w, n);
  EXPECT_EQ(ids[0], 3);  // 3.0 stays first; 6 (0.5 + 2.5) beats 5 (2.0)
  EXPECT_EQ(ids[1], 6);
  // Renormalised router probabilities of 3 and 6: e^3 / (e^3 + e^0.5).
  EXPECT_NEAR(w[0], std::exp(3.0) / (std::exp(3.0) + std::exp(0.5)), 1e-6);
}

TEST(RouteWithPolicy, SkipBelowDropsSmallSharesAndRenormalises) {
  auto c = eight_experts_top2();
  auto o = parse_routing_options("skip_below=0.3", c);
  expert_cache_model cache(c, o);
  routing_counters n;
  int32_t ids[2];
  float w[2];
  std::vector<float> row = {0, 0, 0, 4.0f, 0, 2.0f, 0, 0};  // 5's share: 1 / (1 + e^2) = 0.12
  route_with_policy(c, o, cache, 0, row.data(), 1, ids, w, n);
  EXPECT_EQ(ids[0], 3);
  EXPECT_EQ(ids[1], -1);
  EXPECT_EQ(w[0], 1.0f);
  EXPECT_EQ(w[1], 0.0f);
  EXPECT_EQ(n.skipped.load(), 1);
}

TEST(RouteWithPolicy, MarksTheSlotsWhoseExpertWasNotResidentBeforeItsToken) {
  // What a head sends marked low-precision under a store's fallback: the store's own misses.
  auto c = eight_experts_top2();
  auto o = parse_routing_options("skip_below=0.3,cache_fraction=0.25", c);
  expert_cache_model cache(c, o);
  int32_t warm[] = {3};
  cache.touch(0, warm, 1);
  routing_counters n;
  int32_t ids[6];
  float w[6];
  uint8_t missed[6];
  std::vector<float> rows = {0, 0, 0, 4.0f, 0,    3.5f, 0, 0,   // 3 (resident), 5 (a miss)
                             0, 0, 0, 4.0f, 0,    3.5f, 0, 0,   // both resident now
                             0, 0, 0, 0,    4.0f, 2.0f, 0, 0};  // 4 (a miss), 5 skipped
  route_with_policy(c, o, cache, 0, rows.data(), 3, ids, w, n, missed);
  EXPECT_EQ(std::vector<int32_t>(ids, ids + 6), (std::vector<int32_t>{3, 5, 3, 5, 4, -1}));
  EXPECT_EQ(std::vector<uint8_t>(missed, missed + 6), (std::vector<uint8_t>{0, 1, 0, 0, 1, 0}));
  EXPECT_EQ(n.hits.load(), 3);
}

struct engine {
  loaded_model m;
  kernels::thread_pool pool{2};
  local_expert_backend experts;
  transformer net;
  explicit engine(const std::filesystem::path& dir)
      : m(load_model(dir)), experts(m.weights, pool), net(m.config, m.weights, pool, experts) {}
  std::vector<float> logits(const std::vector<int32_t>& tokens, const std::vector<size_t>& chunks) {
    kv_cache cache(m.config, static_cast<int64_t>(tokens.size()));
    std::vector<float> all, out;
    size_t at = 0;
    for (size_t n : chunks) {
      net.forward(std::span(tokens).subspan(at, n), cache, logits_for::all, out);
      all.insert(all.end(), out.begin(), out.end());
      at += n;
    }
    return all;
  }
};

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class RoutingPolicyEngine : public testing::Test {
 protected:
  void SetUp() override {
    write_synthetic_weights(dir_.path(), {.family = "qwen3_moe", .preset = "tiny", .seed = 2});
  }
  temp_dir dir_;
  std::vector<int32_t> prompt_ = {5, 99, 311, 42, 7, 250, 18, 400, 3, 77, 12, 5, 99, 311};
};

TEST_F(RoutingPolicyEngine, AllOffRoutesExactlyAndOnlyCountsHits) {
  engine exact(dir_.path()), counted(dir_.path());
  counted.net.set_routing_policy(
      parse_routing_options("cache=lru,cache_fraction=0.5", counted.m.config));
  EXPECT_TRUE(bit_equal(exact.logits(prompt_, {prompt_.size()}),
                        counted.logits(prompt_, {prompt_.size()})));
  EXPECT_GT(counted.net.routing_stats().hits.load(), 0);
  EXPECT_EQ(counted.net.routing_stats().skipped.load(), 0);
}

TEST_F(RoutingPolicyEngine, EachPolicyChangesRoutingAndRoutesTheSameInEveryRunAndBatchShape) {
  engine exact(dir_.path());
  const auto baseline = exact.logits(prompt_, {prompt_.size()});
  for (const char* spec :
       {"cache_aware=max_rank,max_rank=4,cache_fraction=0.25",
        "cache_aware=cumulative,cumulative=0.7,cache=lfu,cache_fraction=0.25",
        "cache_aware=prior,prior=2,cache=activation,cache_fraction=0.25", "skip_below=0.45"}) {
    engine a(dir_.path()), b(dir_.path());
    a.net.set_routing_policy(parse_routing_options(spec, a.m.config));
    b.net.set_routing_policy(parse_routing_options(spec, b.m.config));
    auto batch = a.logits(prompt_, {prompt_.size()});
    EXPECT_FALSE(bit_equal(batch, baseline)) << spec << ": routing should change";
    EXPECT_TRUE(bit_equal(batch, b.logits(prompt_, std::vector<size_t>(prompt_.size(), 1))))
        << spec << ": token by token, another engine";
    EXPECT_TRUE(bit_equal(batch, a.logits(prompt_, {5, 9}))) << spec << ": a new sequence";
  }
}

}  // namespace
}  // namespace xmesh::model
