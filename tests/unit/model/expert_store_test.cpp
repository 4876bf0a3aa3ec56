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

TEST(ExpertStore, SameOutputAsTheModelFilesWithinItsBudget) {
  temp_dir dir;
  write_synthetic_weights(dir.path(), {.family = "mixtral", .preset = "tiny", .seed = 9});
  auto m = load_model(dir.path());
  kernels::thread_pool pool(2);
  generation_options o{.max_new_tokens = 12, .keep_all_logits = true, .stop_at_eos = false};
  std::vector<int32_t> prompt = {5, 99, 311, 42, 7, 250, 18};
  local_expert_backend plain(m.weights, pool);
  transformer net(m.config, m.weights, pool, plain);
  auto want = generate(net, prompt, o);

  expert_store store(m.config, m.weights,
                     parse_store_options("cache_fraction=0.25,cache=lfu", m.config));
  local_expert_backend cached(m.weights, pool);
  cached.set_store(&store);
  transformer net2(m.config, m.weights, pool, cached);
  auto got = generate(net2, prompt, o);
  EXPECT_EQ(got.generated, want.generated);
  ASSERT_EQ(got.logits.size(), want.logits.size());
  EXPECT_EQ(0, std::memcmp(got.logits.data(), want.logits.data(), got.logits.size() * 4));
  EXPECT_EQ(store.capacity(), 2);  // tiny: 8 experts per layer
  for (int64_t l = 0; l < m.config.num_layers; ++l) EXPECT_LE(store.resident(l), 2);
  EXPECT_GT(store.misses.load(), 0);
  EXPECT_GT(store.hits.load(), 0);
  EXPECT_EQ(store.bytes_loaded.load(),
            store.misses.load() * m.weights.layers[0].experts[0].bytes());
}

TEST(ExpertStore, MissesComputeWithTheFallbackAndOnlyThem) {
  temp_dir dir;
  write_synthetic_weights(dir.path() / "m", {.family = "qwen3_moe", .preset = "tiny", .seed = 4});
  quantize_model(dir.path() / "m", dir.path() / "q4", {kernels::weight_format::q4, true});
  auto m = load_model(dir.path() / "m");
  kernels::thread_pool pool(2);
  generation_options o{.max_new_tokens = 10, .keep_all_logits = true, .stop_at_eos = false};
  std::vector<int32_t> prompt = {5, 99, 311, 42, 7, 250, 18};
  auto run = [&](const std::string& spec) {
    expert_store store(m.config, m.weights, parse_store_options(spec, m.config));
    local_expert_backend backend(m.weights, pool);
    backend.set_store(&store);
    transformer net(m.config, m.weights, pool, backend);
    auto r = generate(net, prompt, o);
    EXPECT_GT(store.misses.load(), 0);
    return std::pair(r.logits, store.fallbacks.load());
  };
  auto exact = run("cache_fraction=0.25");
  // A fallback that is the model itself changes nothing: the switch picks the right expert.
  auto same = run("cache_fraction=0.25,fallback=" + (dir.path() / "m").string());
  EXPECT_EQ(0, std::memcmp(same.first.data(), exact.first.data(), exact.first.size() * 4));
  EXPECT_GT(same.second, 0);
  // A q4 fallback computes the misses differently, and the same way in every run.
  auto q4 = run("cache_fraction=0.25,fallback=" + (dir.path() / "q4").string());
  auto again = run("cache_fraction=0.25,fallback=" + (dir.path() / "q4").string());
  EXPECT_NE(0, std::memcmp(q4.first.data(), exact.first.data(), exact.first.size() * 4));
  EXPECT_EQ(0, std::memcmp(q4.first.data(), again.first.data(), q4.first.size() * 4));
  EXPECT_EQ(q4.second, again.second);
  // load_rank=1: second-ranked misses are read for their token only, not kept; without a
  // fallback the output is still exactly the model's.
  auto uncached = run("cache_fraction=0.25,load_rank=1");
  EXPECT_EQ(0, std::memcmp(uncached.first.data(), exact.first.data(), exact.first.size() * 4));
}

TEST(ExpertStore, ABadReadIsRefusedAndReadAgainNothingComputedFromIt) {
  temp_dir dir;
  write_synthetic_weights(dir.path(), {.family = "mixtral", .preset = "tiny", .seed = 9});
  auto m = load_model(dir.path());
  kernels::thread_pool pool(2);
  generation_options o{.max_new_tokens = 6, .keep_all_logits = true, .stop_at_eos = false};
  std::vector<int32_t> prompt = {5, 99, 311, 42};
  local_expert_backend plain(m.weights, pool);
  transformer reference(m.config, m.weights, pool, plain);
  auto want = generate(reference, prompt, o);
  auto run = [&](const char* corrupt, int64_t* refused) {
    setenv("XMESH_FAULT_CORRUPT_STORE", corrupt, 1);
    expert_store store(m.config, m.weights, parse_store_options("cache_fraction=0.25", m.config));
    unsetenv("XMESH_FAULT_CORRUPT_STORE");
    local_expert_backend backend(m.weights, pool);
    backend.set_store(&store);
    transformer net(m.config, m.weights, pool, backend);
    auto r = generate(net, prompt, o);
    *refused = store.corrupt_reads;
    return r;
  };
  int64_t refused = 0;
  auto got = run("1", &refused);  // the first read is bad: refused, read again
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(0, std::memcmp(got.logits.data(), want.logits.data(), want.logits.size() * 4));
  // Both reads of the first expert bad: the request fails with one line, nothing computed.
  try {
    run("2", &refused);
    FAIL() << "computed from a bad copy";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("failed its checksum twice"), std::string::npos)
        << e.what();
  }
}

TEST(ExpertStore, PrefetchPredictsTheNextLayerAndChangesNoOutput) {
  temp_dir dir;
  write_synthetic_weights(dir.path(), {.family = "qwen3_moe", .preset = "tiny", .seed = 4});
  auto m = load_model(dir.path());
  kernels::thread_pool pool(2);
  generation_options o{.max_new_tokens = 12, .keep_all_logits = true, .stop_at_eos = false};
  std::vector<int32_t> prompt = {5, 99, 311, 42};
  local_expert_backend plain(m.weights, pool);
  transformer reference(m.config, m.weights, pool, plain);
  auto want = generate(reference, prompt, o);
  expert_store store(m.config, m.weights,
                     parse_store_options("cache_fraction=0.25,prefetch=1", m.config));
  local_expert_backend backend(m.weights, pool);
  backend.set_store(&store);
  transformer net(m.config, m.weights, pool, backend);
  net.set_moe_observer(
      [&](int64_t l, const float* x, int64_t n) { store.prefetch_after(l, x, n, pool); });
  auto got = generate(net, prompt, o);
  EXPECT_EQ(0, std::memcmp(got.logits.data(), want.logits.data(), want.logits.size() * 4));
  // tiny has 2 MoE layers: each decode step predicts layer 1 from layer 0 (top-2).
  EXPECT_EQ(store.prefetch_predicted.load(), 2 * (o.max_new_tokens - 1));
  EXPECT_EQ(store.prefetch_used.load(), store.prefetch_predicted.load());
  EXPECT_GT(store.prefetch_hits.load(), 0);
  EXPECT_LE(store.prefetch_hits.load(), store.prefetch_used.load());
}

TEST(ExpertStore, SettingsAreChecked) {
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
