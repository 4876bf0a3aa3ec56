// The expert store: computing from its copies changes no output, it never holds more than its
// budget, and its settings are checked.
#include "model/expert_store.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "model/generator.hpp"
#include "model/quantize.hpp"
#include "model/synthetic.hpp"
#include "tests/support/temp_dir.hpp"

namespace xmesh::model {
namespace {

using testing_support::temp_dir;

// A tiny Qwen3-MoE model (and its q4 experts) generated once per test, and runs of it with or
// without a store.
class ExpertStore : public testing::Test {
 protected:
  void SetUp() override {
    write_synthetic_weights(dir_.path() / "m",
                            {.family = "qwen3_moe", .preset = "tiny", .seed = 4});
    quantize_model(dir_.path() / "m", dir_.path() / "q4", {kernels::weight_format::q4, true});
    m_ = load_model(dir_.path() / "m");
  }
  std::string path(const char* name) const { return (dir_.path() / name).string(); }
  std::vector<float> plain() {
    local_expert_backend backend(m_.weights, pool_);
    transformer net(m_.config, m_.weights, pool_, backend);
    return generate(net, prompt_, options_).logits;
  }
  std::vector<float> with(expert_store& store, bool prefetch = false) {
    local_expert_backend backend(m_.weights, pool_);
    backend.set_store(&store);
    transformer net(m_.config, m_.weights, pool_, backend);
    if (prefetch)
      net.set_moe_observer([&](int64_t l, const float* x, int64_t n, expert_cache_model*) {
        store.prefetch_after(l, x, n, pool_);
      });
    return generate(net, prompt_, options_).logits;
  }
  static bool same(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
  }

  temp_dir dir_;
  loaded_model m_;
  kernels::thread_pool pool_{2};
  generation_options options_{.max_new_tokens = 10, .keep_all_logits = true, .stop_at_eos = false};
  std::vector<int32_t> prompt_ = {5, 99, 311, 42, 7, 250, 18};
};

TEST_F(ExpertStore, SameOutputAsTheModelFilesWithinItsBudget) {
  expert_store store(m_.config, m_.weights,
                     parse_store_options("cache_fraction=0.25,cache=lfu", m_.config));
  EXPECT_TRUE(same(with(store), plain()));
  EXPECT_EQ(store.capacity(), 2);  // tiny: 8 experts per layer
  for (int64_t l = 0; l < m_.config.num_layers; ++l) EXPECT_LE(store.resident(l), 2);
  EXPECT_GT(store.misses.load(), 0);
  EXPECT_GT(store.hits.load(), 0);
  EXPECT_EQ(store.bytes_loaded.load(),
            store.misses.load() * m_.weights.layers[0].experts[0].bytes());
}

TEST_F(ExpertStore, MissesComputeWithTheFallbackAndOnlyThem) {
  auto run = [&](const std::string& knobs) {
    expert_store store(m_.config, m_.weights, parse_store_options(knobs, m_.config));
    auto logits = with(store);
    EXPECT_GT(store.misses.load(), 0);
    return std::pair(logits, store.fallbacks.load());
  };
  const auto exact = plain();
  // A fallback that is the model itself changes nothing: the switch picks the right expert.
  auto itself = run("cache_fraction=0.25,fallback=" + path("m"));
  EXPECT_TRUE(same(itself.first, exact));
  EXPECT_GT(itself.second, 0);
  // A q4 fallback computes the misses differently, and the same way in every run.
  auto q4 = run("cache_fraction=0.25,fallback=" + path("q4"));
  auto again = run("cache_fraction=0.25,fallback=" + path("q4"));
  EXPECT_FALSE(same(q4.first, exact));
  EXPECT_TRUE(same(q4.first, again.first));
  EXPECT_EQ(q4.second, again.second);
  // load_rank=1: second-ranked misses are read for their token only, not kept; without a
  // fallback the output is still exactly the model's.
  EXPECT_TRUE(same(run("cache_fraction=0.25,load_rank=1").first, exact));
}

TEST_F(ExpertStore, ABadReadIsRefusedAndReadAgainNothingComputedFromIt) {
  auto store_corrupting = [&](const char* reads) {
    setenv("XMESH_FAULT_CORRUPT_STORE", reads, 1);
    auto store = std::make_unique<expert_store>(
        m_.config, m_.weights, parse_store_options("cache_fraction=0.25", m_.config));
    unsetenv("XMESH_FAULT_CORRUPT_STORE");
    return store;
  };
  auto once = store_corrupting("1");  // the first read is bad: refused, read again
  EXPECT_TRUE(same(with(*once), plain()));
  EXPECT_EQ(once->corrupt_reads.load(), 1);
  // Both reads of the first expert bad: the request fails with one line, nothing computed.
  auto twice = store_corrupting("2");
  try {
    with(*twice);
    FAIL() << "computed from a bad copy";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("failed its checksum twice"), std::string::npos)
        << e.what();
  }
}

TEST_F(ExpertStore, PrefetchPredictsTheNextLayerAndChangesNoOutput) {
  expert_store store(m_.config, m_.weights,
                     parse_store_options("cache_fraction=0.25,prefetch=1", m_.config));
  EXPECT_TRUE(same(with(store, true), plain()));
  // tiny has 2 MoE layers: each decode step predicts layer 1 from layer 0 (top-2).
  EXPECT_EQ(store.prefetch_predicted.load(), 2 * (options_.max_new_tokens - 1));
  EXPECT_EQ(store.prefetch_used.load(), store.prefetch_predicted.load());
  EXPECT_GT(store.prefetch_hits.load(), 0);
  EXPECT_LE(store.prefetch_hits.load(), store.prefetch_used.load());
}

// A routing policy and pre-gating prefetch together: the prefetch admits its predictions into
// the policy's logical cache as well as the store's, so both stay one cache (the policy's hits
// are the store's hits) and the output repeats run after run. Decode steps over varied tokens
// (teacher forcing), so that routing moves and predictions matter.
TEST_F(ExpertStore, PrefetchAndARoutingPolicyKeepOneCache) {
  const std::string cache = "cache=lru,cache_fraction=0.25";
  struct outcome {
    std::vector<float> logits;
    int64_t policy_hits, store_hits;
  };
  auto run = [&](bool prefetch) {
    expert_store store(m_.config, m_.weights,
                       parse_store_options(cache + (prefetch ? ",prefetch=1" : ""), m_.config));
    local_expert_backend backend(m_.weights, pool_);
    backend.set_store(&store);
    transformer net(m_.config, m_.weights, pool_, backend);
    net.set_routing_policy(
        parse_routing_options("cache_aware=prior,prior=0.5," + cache, m_.config));
    net.set_moe_observer([&](int64_t l, const float* x, int64_t n, expert_cache_model* c) {
      store.prefetch_after(l, x, n, pool_, c);
    });
    kv_cache kv(m_.config, 64);
    outcome o;
    std::vector<float> logits;
    for (int32_t t = 0; t < 40; ++t) {
      const int32_t token = (t * 37 + 11) % 500;
      net.forward(std::span(&token, 1), kv, logits_for::last, logits);
      o.logits.insert(o.logits.end(), logits.begin(), logits.end());
    }
    o.policy_hits = net.routing_stats().hits.load();
    o.store_hits = store.hits.load();
    return o;
  };
  auto first = run(true), again = run(true), without = run(false);
  EXPECT_EQ(first.policy_hits, first.store_hits);
  EXPECT_TRUE(same(again.logits, first.logits));
  EXPECT_EQ(again.store_hits, first.store_hits);
  EXPECT_EQ(without.policy_hits, without.store_hits);
  EXPECT_NE(first.store_hits, without.store_hits);  // the prefetch changed what was resident
}

TEST(ExpertStoreOptions, SettingsAreChecked) {
  model_config c;
  c.num_layers = 1, c.num_experts = 8, c.top_k = 2;
  auto error = [&](const std::string& spec) {
    try {
      parse_store_options(spec, c);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(parse_store_options("rate=100MB", c).bytes_per_s, 100'000'000);
  EXPECT_EQ(parse_store_options("rate=2.5GB,cache=activation", c).bytes_per_s, 2'500'000'000);
  EXPECT_NE(error("rate=fast").find("expert store: rate: expected a positive rate like 100MB"),
            std::string::npos);
  EXPECT_NE(error("rate=-1MB").find("expert store: rate:"), std::string::npos);
  EXPECT_NE(error("cache_fraction=0.1").find("expert store: cache_fraction: a cache of 0.1 x 8"),
            std::string::npos);
  EXPECT_NE(error("prior=1").find("expert store: prior: a routing knob"), std::string::npos);
  EXPECT_NE(error("prefetch=yes").find("expert store: prefetch: expected 0 or 1"),
            std::string::npos);
}

}  // namespace
}  // namespace xmesh::model
