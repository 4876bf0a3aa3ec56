// An expert node's store: under concurrent batches it never holds more than its capacity per
// layer, every lease carries the expert's exact bytes, and a bad read is refused and read again.
#include "actors/node_store.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <thread>

#include "actors/expert_host.hpp"
#include "model/quantize.hpp"
#include "model/synthetic.hpp"
#include "tests/support/temp_dir.hpp"

namespace xmesh::actors {
namespace {

class NodeStore : public testing::Test {
 protected:
  void SetUp() override {
    model::write_synthetic_weights(dir_.path() / "m",
                                   {.family = "qwen3_moe", .preset = "tiny", .seed = 4});
    m_ = model::load_model(dir_.path() / "m");
  }
  model::store_options options(const std::string& spec) {
    return model::parse_store_options(spec, m_.config);
  }
  testing_support::temp_dir dir_;
  model::loaded_model m_;
};

TEST_F(NodeStore, ConcurrentBatchesStayWithinTheBudgetAndComputeWithExactCopies) {
  node_store store(m_, options("cache_fraction=0.25,cache=lru,rate=200MB"));
  ASSERT_EQ(store.capacity(), 2);  // tiny: 8 experts per layer
  const int64_t layer = 1, experts = m_.config.num_experts;
  std::vector<std::thread> batches;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 6; ++t)
    batches.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 40; ++i) {
        const int64_t e = rng() % experts;
        auto held = store.acquire(layer, e);
        if (expert_checksum(held.weights()) != expert_checksum(m_.weights.layers[layer].experts[e]))
          ++wrong;
        std::this_thread::sleep_for(std::chrono::microseconds(200));  // computing
      }
    });
  for (auto& b : batches) b.join();
  const auto& n = store.layers()[layer];
  EXPECT_EQ(wrong, 0);
  EXPECT_LE(n.peak, 2);
  EXPECT_EQ(n.hits + n.misses, 6 * 40);
  EXPECT_GT(n.misses, 0);
  EXPECT_EQ(n.bytes, n.misses * store.resident_bytes() / n.resident);
  EXPECT_EQ(store.bytes_loaded(), n.bytes);  // per layer: only layer 1 read anything
  EXPECT_GT(n.stall_seconds, 0.0);
  const auto& other = store.layers()[0];  // only layer 1 was used
  EXPECT_EQ(other.resident, 0);
  EXPECT_EQ(other.stall_seconds, 0.0);
}

TEST_F(NodeStore, EvictsByItsPolicyAndKeepsWhatIsInUse) {
  node_store lru(m_, options("cache_fraction=0.25,cache=lru"));
  {
    auto a = lru.acquire(1, 0);
    { auto b = lru.acquire(1, 1); }
    { auto c = lru.acquire(1, 2); }  // evicts 1 (0 is in use, though older)
  }
  { auto again = lru.acquire(1, 0); }
  EXPECT_EQ(lru.layers()[1].hits, 1);
  node_store lfu(m_, options("cache_fraction=0.25,cache=lfu"));
  for (int i = 0; i < 3; ++i) (void)lfu.acquire(1, 5);
  (void)lfu.acquire(1, 6);
  (void)lfu.acquire(1, 7);  // evicts 6: used once, where 5 was used three times
  (void)lfu.acquire(1, 5);
  EXPECT_EQ(lfu.layers()[1].misses, 3);
}

TEST_F(NodeStore, ABadReadIsRefusedAndReadAgain) {
  setenv("XMESH_FAULT_CORRUPT_STORE", "1", 1);
  node_store once(m_, options("cache_fraction=0.25"));
  auto held = once.acquire(1, 3);
  EXPECT_EQ(expert_checksum(held.weights()), expert_checksum(m_.weights.layers[1].experts[3]));
  EXPECT_EQ(once.corrupt_reads, 1);
  setenv("XMESH_FAULT_CORRUPT_STORE", "2", 1);
  node_store twice(m_, options("cache_fraction=0.25"));
  unsetenv("XMESH_FAULT_CORRUPT_STORE");
  try {
    (void)twice.acquire(1, 3);
    FAIL() << "two bad reads must fail the batch";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(),
                 "expert 3 of layer 1: two reads from the slow tier failed their checksum");
  }
  EXPECT_EQ(twice.layers()[1].resident, 0);  // nothing kept from bad bytes
}

TEST_F(NodeStore, AFallbackIsAlwaysResidentAndAWarmedExpertLoadsInTheBackground) {
  model::quantize_model(dir_.path() / "m", dir_.path() / "q4",
                        {.format = kernels::weight_format::q4, .experts_only = true});
  node_store store(
      m_, options("cache_fraction=0.25,rate=200MB,fallback=" + (dir_.path() / "q4").string()));
  ASSERT_TRUE(store.has_fallback());
  const auto* low = store.low_precision(1, 3);
  ASSERT_NE(low, nullptr);
  EXPECT_EQ(low->gate.format, kernels::weight_format::q4);
  EXPECT_EQ(store.resident_bytes(), 0);  // not counted in the budget of full copies
  store.warm(1, 3);
  store.warm(1, 3);  // queued once
  for (int i = 0; i < 500 && store.layers()[1].resident.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto held = store.acquire(1, 3);  // resident by now, or waits for the load under way
  EXPECT_EQ(expert_checksum(held.weights()), expert_checksum(m_.weights.layers[1].experts[3]));
  EXPECT_EQ(store.layers()[1].misses, 0);  // the background load is no batch's miss
  EXPECT_EQ(store.layers()[1].hits, 1);    // the batch
  EXPECT_EQ(store.bytes_loaded(), store.resident_bytes());  // but its bytes count
  // A store that only prefetches loads in the background too (the head's prefetch frames).
  node_store prefetching(m_, options("cache_fraction=0.25,prefetch=1"));
  prefetching.warm(1, 2);
  for (int i = 0; i < 500 && prefetching.layers()[1].resident.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(prefetching.layers()[1].resident, 1);
  // A fallback that is not a copy of this model is refused by name.
  model::write_synthetic_weights(dir_.path() / "other",
                                 {.family = "qwen3_moe", .preset = "small", .seed = 5});
  try {
    node_store wrong(m_, options("fallback=" + (dir_.path() / "other").string()));
    FAIL() << "a fallback of another model must be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a whole copy of this model"), std::string::npos)
        << e.what();
  }
}

// Copies of an expert as a peer would stream them, the first `bad` damaged in transit.
node_store::fetcher damaged_copies(const kernels::expert_weights& source, int& copies, int bad) {
  return [&source, &copies, bad](int64_t) {
    auto copy = model::copy_expert(source, 0);
    if (copies++ < bad)
      *static_cast<std::byte*>(const_cast<void*>(copy->weights.down.data)) ^= std::byte{4};
    return copy;
  };
}

TEST_F(NodeStore, APeerIsASlowTierWhoseBadCopiesAreRefused) {
  // A node without its own copy reads the expert from a peer; the coordinator's checksum decides.
  node_store store(m_, options("cache_fraction=0.25"));
  const auto& source = m_.weights.layers[1].experts[3];
  int copies = 0;
  store.source_from_peer(1, 3, "dc", expert_checksum(source), damaged_copies(source, copies, 1));
  {
    auto held = store.acquire(1, 3);
    EXPECT_EQ(expert_checksum(held.weights()), expert_checksum(source));
  }
  EXPECT_EQ(copies, 2);
  EXPECT_EQ(store.corrupt_reads, 1);
  EXPECT_EQ(store.bytes_from_peers, store.bytes_loaded());
  // Two bad copies in a row fail the batch naming the peer; nothing is kept.
  node_store twice(m_, options("cache_fraction=0.25"));
  int again = 0;
  twice.source_from_peer(1, 3, "dc", expert_checksum(source), damaged_copies(source, again, 2));
  try {
    (void)twice.acquire(1, 3);
    FAIL() << "two bad copies must fail the batch";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "expert 3 of layer 1: two copies from peer 'dc' failed their checksum");
  }
  EXPECT_EQ(twice.layers()[1].resident, 0);
}

TEST_F(NodeStore, ActivationAwareEvictionWeighsFrequencyAgainstRecency) {
  // Expert 5 is used three times, then 6 once; 7 needs room. LRU evicts 5 (older); an
  // activation-aware store with a slow decay keeps 5 (used more), with a fast decay drops it.
  auto run = [&](const std::string& spec) {
    node_store store(m_, options("cache_fraction=0.25," + spec));
    for (int i = 0; i < 3; ++i) (void)store.acquire(1, 5);
    (void)store.acquire(1, 6);
    (void)store.acquire(1, 7);
    const int64_t hits = store.layers()[1].hits;
    (void)store.acquire(1, 5);
    return store.layers()[1].hits > hits;  // 5 was still resident
  };
  EXPECT_FALSE(run("cache=lru"));
  EXPECT_TRUE(run("cache=activation,decay=0.9"));
  EXPECT_FALSE(run("cache=activation,decay=0.5"));
}

}  // namespace
}  // namespace xmesh::actors
