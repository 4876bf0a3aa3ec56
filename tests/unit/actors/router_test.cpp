// The router service's state without processes: scripted channels stand in for expert nodes and
// answer (or fail, or stay silent) as each test decides.
#include "actors/router.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "actors/expert_host.hpp"
#include "transport/frame.hpp"

namespace xmesh::actors {
namespace {

constexpr int64_t hidden = 4;

// One request a scripted node received and has not answered yet.
struct sent_frame {
  std::string address;
  transport::frame frame;
  std::function<void(transport::bytes, std::string)> reply;
  size_t bytes = 0;  // the frame as sent
};

struct script {
  std::mutex mutex;
  std::deque<sent_frame> inbox;
  int opened = 0;

  channel_opener opener() {
    return [this](const std::string& address) -> std::unique_ptr<transport::channel> {
      std::lock_guard lock(mutex);
      ++opened;
      return std::make_unique<scripted>(this, address);
    };
  }

  struct scripted final : transport::channel {
    scripted(script* s, std::string a) : s_(s), address_(std::move(a)) {}
    void request(transport::bytes m,
                 std::function<void(transport::bytes, std::string)> on_reply) override {
      auto d = transport::decode_frame(m, {});
      ASSERT_TRUE(d.ok()) << d.reason;
      std::lock_guard lock(s_->mutex);
      s_->inbox.push_back({address_, d.frame.to_frame(), std::move(on_reply), m.size()});
    }
    script* s_;
    std::string address_;
  };

  sent_frame take() {
    std::lock_guard lock(mutex);
    EXPECT_FALSE(inbox.empty());
    auto f = std::move(inbox.front());
    inbox.pop_front();
    return f;
  }
  size_t pending() {
    std::lock_guard lock(mutex);
    return inbox.size();
  }
};

// The expert "computes" row * (expert + 1), so every output names the expert that made it.
void answer(sent_frame& s, int64_t width = hidden) {
  auto h = s.frame.header;
  h.kind = transport::frame_kind::result;
  h.num_rows = h.num_pairs;  // one output per pair
  transport::frame_builder b(h, s.frame.expert_of_pair, s.frame.token_of_pair);
  for (size_t p = 0; p < h.num_pairs; ++p)
    for (int64_t i = 0; i < width; ++i)
      b.rows()[p * width + i] =
          s.frame.rows[s.frame.row_of_pair[p] * width + i] * float(s.frame.expert_of_pair[p] + 1);
  s.reply(b.seal(), {});
}

void refuse(sent_frame& s, host_errc code) {
  transport::frame_header h = s.frame.header;
  h.flags = static_cast<uint32_t>(code);
  s.reply(transport::encode_error_frame(h, "refused"), {});
}

// Two layers of 4 experts over nodes n0, n1, n2; expert e of every layer on node e % 3, and
// expert 0 also on n1.
std::shared_ptr<const placement_table> table(uint64_t version) {
  placement_table t;
  t.version = version;
  t.num_layers = 2;
  t.num_experts = 4;
  t.nodes = {"n0", "n1", "n2"};
  t.addresses = {"a0", "a1", "a2"};
  t.replica_begin = {0};
  for (int l = 0; l < 2; ++l)
    for (int e = 0; e < 4; ++e) {
      t.replica_node.push_back(e % 3);
      if (e == 0) t.replica_node.push_back(1);
      t.replica_begin.push_back(static_cast<int32_t>(t.replica_node.size()));
    }
  return std::make_shared<const placement_table>(t);
}

struct RouterTest : ::testing::Test {
  script s;
  router_options options() {
    router_options o;
    o.head_id = 7;
    o.deadline = std::chrono::milliseconds(5000);
    return o;
  }
  std::unique_ptr<router_service> make(router_options o) {
    auto r = std::make_unique<router_service>(hidden, o, s.opener());
    r->set_table(table(1));
    return r;
  }
  // Two tokens, top-2: token 0 -> experts 3, 1; token 1 -> experts 1, 2.
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<int32_t> ids = {3, 1, 1, 2};
  std::vector<float> y = std::vector<float>(4 * hidden, -1);
  void expect_outputs() {
    for (int s = 0; s < 4; ++s)
      for (int i = 0; i < hidden; ++i)
        EXPECT_EQ(y[s * hidden + i], x[(s / 2) * hidden + i] * float(ids[s] + 1)) << s;
  }
};

TEST_F(RouterTest, OneFramePerNodeRowsByExpertAndUniqueBatchIds) {
  auto r = make(options());
  auto batch = r->submit(0, x.data(), 2, ids.data(), 2, y.data());
  ASSERT_EQ(s.pending(), 3u);  // experts 3 (n0), 1 (n1), 2 (n2): one frame per node
  std::vector<sent_frame> frames;
  while (s.pending() > 0) frames.push_back(s.take());
  std::set<uint64_t> batch_ids;
  for (auto& f : frames) {
    EXPECT_EQ(f.frame.header.batch_id >> 48, 7u);  // the head's id in the top 16 bits
    batch_ids.insert(f.frame.header.batch_id);
    EXPECT_TRUE(std::is_sorted(f.frame.expert_of_pair.begin(), f.frame.expert_of_pair.end()));
    std::set<int32_t> tokens;
    for (int32_t slot : f.frame.token_of_pair) tokens.insert(slot / 2);
    EXPECT_EQ(f.frame.header.num_rows, tokens.size());  // each token's row once per node
    EXPECT_EQ(f.frame.header.placement_version, 1u);
  }
  EXPECT_EQ(batch_ids.size(), frames.size());
  EXPECT_EQ(r->frames_in_flight(), static_cast<int64_t>(frames.size()));
  for (auto& f : frames) answer(f);
  batch->wait();
  expect_outputs();
  EXPECT_EQ(r->frames_in_flight(), 0);
}

TEST_F(RouterTest, ATokenTravelsOncePerNodeWhateverItsExpertsThere) {
  placement_table t;
  t.version = 1;
  t.num_layers = 1;
  t.num_experts = 4;
  t.nodes = {"n0", "n1"};
  t.addresses = {"a0", "a1"};
  t.replica_node = {0, 0, 1, 1};  // experts 0, 1 on n0; 2, 3 on n1
  t.replica_begin = {0, 1, 2, 3, 4};
  router_service r(hidden, options(), s.opener());
  r.set_table(std::make_shared<const placement_table>(t));
  std::vector<int32_t> two = {0, 1, 1, 2};  // token 0 -> 0, 1; token 1 -> 1, 2
  auto batch = r.submit(0, x.data(), 2, two.data(), 2, y.data());
  auto a = s.take(), b = s.take();
  auto& n0 = a.address == "a0" ? a : b;
  EXPECT_EQ(n0.frame.header.num_pairs, 3u);
  EXPECT_EQ(n0.frame.header.num_rows, 2u);  // tokens 0 and 1, token 0 read by two pairs
  EXPECT_EQ(n0.frame.row_of_pair, (std::vector<int32_t>{0, 0, 1}));
  answer(a);
  answer(b);
  batch->wait();
  ids = two;
  expect_outputs();
}

// A node's share bigger than one frame may carry (expert hosts accept no more, so a stranger's
// message pins little) goes in several frames, each with its own batch id.
TEST_F(RouterTest, AShareBeyondOneFrameIsSplitIntoFramesTheHostAccepts) {
  constexpr int64_t wide = 1 << 16;  // 256 KiB rows (the widest a frame has): 15 pairs a frame
  const uint32_t per_frame = expert_host::max_pairs_per_frame(wide);
  ASSERT_EQ(per_frame, 15u);
  placement_table t;
  t.version = 1;
  t.num_layers = 1;
  t.num_experts = 4;
  t.nodes = {"n0"};
  t.addresses = {"a0"};
  t.replica_node = {0, 0, 0, 0};
  t.replica_begin = {0, 1, 2, 3, 4};
  router_service r(wide, options(), s.opener());
  r.set_table(std::make_shared<const placement_table>(t));
  const int64_t tokens = 8;
  std::vector<float> in(tokens * wide), out(2 * tokens * wide, -1);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i % 1000);
  std::vector<int32_t> top2 = {0, 1, 2, 3, 1, 0, 3, 2, 0, 2, 1, 3, 2, 1, 3, 0};  // 16 pairs
  auto batch = r.submit(0, in.data(), tokens, top2.data(), 2, out.data());
  ASSERT_EQ(s.pending(), 2u);  // 15 + 1 pairs
  std::set<uint64_t> batch_ids;
  uint32_t pairs = 0;
  std::vector<sent_frame> frames;
  while (s.pending() > 0) frames.push_back(s.take());
  for (auto& f : frames) {
    EXPECT_LE(f.frame.header.num_pairs, per_frame);
    model::model_config shapes;
    shapes.hidden = wide;
    EXPECT_LE(f.bytes, expert_host::max_request_bytes(shapes));
    pairs += f.frame.header.num_pairs;
    batch_ids.insert(f.frame.header.batch_id);
  }
  EXPECT_EQ(pairs, 16u);
  EXPECT_EQ(batch_ids.size(), 2u);
  for (auto& f : frames) answer(f, wide);
  batch->wait();
  for (int64_t slot = 0; slot < 2 * tokens; ++slot)
    for (int64_t i = 0; i < wide; i += 4099)
      ASSERT_EQ(out[slot * wide + i], in[(slot / 2) * wide + i] * float(top2[slot] + 1)) << slot;
  EXPECT_EQ(r.frames_in_flight(), 0);
}

TEST_F(RouterTest, LeastOutstandingSpreadsAReplicatedExpert) {
  auto r = make(options());
  // Expert 0 has replicas on n0 and n1; with n0 busy, the next row goes to n1.
  std::vector<int32_t> zero = {0};
  std::vector<float> y1(hidden), y2(hidden);
  auto first = r->submit(0, x.data(), 1, zero.data(), 1, y1.data());
  auto second = r->submit(0, x.data(), 1, zero.data(), 1, y2.data());
  auto a = s.take(), b = s.take();
  EXPECT_NE(a.address, b.address);
  answer(a);
  answer(b);
  first->wait();
  second->wait();
}

TEST(LatencyAwarePolicy, TriesUnmeasuredNodesThenPrefersTheOneThatAnswersFirst) {
  latency_aware_policy p;
  std::vector<int32_t> both = {0, 1};
  std::vector<int64_t> idle = {0, 0};
  EXPECT_EQ(p.expected_s(0, 0), 0);  // not measured: tried first
  // n0: a 50 ms link (LTE) and 0.1 ms per row; n1: 5 ms (WiFi) and 0.2 ms per row.
  for (int round = 0; round < 10; ++round)
    for (int64_t rows : {2, 8, 4, 16}) {
      p.observe(0, rows, 0.050 + 0.0001 * rows);
      p.observe(1, rows, 0.005 + 0.0002 * rows);
    }
  EXPECT_NEAR(p.expected_s(0, 0), 0.0502, 2e-3);
  EXPECT_NEAR(p.expected_s(1, 0), 0.0052, 2e-3);
  for (int64_t expert = 0; expert < 4; ++expert) EXPECT_EQ(p.choose(0, expert, both, idle), 1);
  // Rows already queued on n1 make n0 the sooner answer once they cost more than its delay.
  std::vector<int64_t> queued = {0, 400};
  EXPECT_EQ(p.choose(0, 0, both, queued), 0);
  std::vector<int32_t> only_lte = {0};
  EXPECT_EQ(p.choose(0, 0, only_lte, idle), 0);
  EXPECT_THROW(make_replica_policy("fastest"), std::runtime_error);
  EXPECT_NE(dynamic_cast<latency_aware_policy*>(make_replica_policy("latency").get()), nullptr);
}

TEST_F(RouterTest, LatencyAwareRoutingSendsAReplicatedExpertToTheNodeThatAnswersFirst) {
  auto r = std::make_unique<router_service>(hidden, options(), s.opener(),
                                            std::make_unique<latency_aware_policy>());
  r->set_table(table(1));
  std::vector<int32_t> zero = {0};
  std::vector<float> y1(hidden);
  // Expert 0 lives on n0 (a0, answered 30 ms late) and n1: each is tried once, then n1 serves.
  std::map<std::string, int> frames;
  for (int round = 0; round < 6; ++round) {
    auto batch = r->submit(0, x.data(), 1, zero.data(), 1, y1.data());
    auto f = s.take();
    ++frames[f.address];
    if (f.address == "a0")
      std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the slow link
    answer(f);
    batch->wait();
  }
  EXPECT_EQ(frames, (std::map<std::string, int>{{"a0", 1}, {"a1", 5}}));
}

TEST_F(RouterTest, NotHostedRowsAreResentToTheReplicaThatHasThem) {
  auto r = make(options());
  // Two rows of expert 0 (replicas on n0 and n1): least outstanding sends one to each.
  std::vector<int32_t> zero = {0, 0};
  std::vector<float> out(2 * hidden, -1);
  auto batch = r->submit(1, x.data(), 2, zero.data(), 1, out.data());
  auto a = s.take(), b = s.take();
  ASSERT_NE(a.address, b.address);
  auto& gone = a.address == "a1" ? a : b;  // n1 lost its replica
  auto& kept = a.address == "a1" ? b : a;
  refuse(gone, host_errc::not_hosted);
  answer(kept);
  std::thread waiter([&] { batch->wait(); });
  for (int i = 0; i < 400 && s.pending() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(s.pending(), 1u);
  auto again = s.take();
  EXPECT_EQ(again.address, "a0");  // the replica that still has it
  answer(again);
  waiter.join();
  for (int i = 0; i < 2 * hidden; ++i) EXPECT_EQ(out[i], x[i]);
  EXPECT_EQ(r->rows_resent(), 1u);
}

TEST_F(RouterTest, ExpertFailureIsTypedAndNamesTheNode) {
  auto r = make(options());
  std::vector<int32_t> two = {2};
  std::vector<float> out(hidden);
  auto batch = r->submit(0, x.data(), 1, two.data(), 1, out.data());
  auto f = s.take();
  refuse(f, host_errc::expert_failed);
  try {
    batch->wait();
    FAIL() << "expected an expert_error";
  } catch (const model::expert_error& e) {
    EXPECT_EQ(e.code(), model::expert_errc::expert_failed);
    EXPECT_NE(std::string(e.what()).find("node 'n2'"), std::string::npos) << e.what();
  }
}

TEST_F(RouterTest, DeadlinePassesAndLateRepliesAreIgnored) {
  auto o = options();
  o.deadline = std::chrono::milliseconds(50);
  auto r = make(o);
  std::vector<int32_t> two = {2};
  std::vector<float> out(hidden, -1);
  auto batch = r->submit(0, x.data(), 1, two.data(), 1, out.data());
  try {
    batch->wait();
    FAIL() << "expected deadline_passed";
  } catch (const model::expert_error& e) {
    EXPECT_EQ(e.code(), model::expert_errc::deadline_passed);
  }
  EXPECT_EQ(r->frames_in_flight(), 0);  // abandoned frames no longer hold a drain back
  auto late = s.take();
  answer(late);  // must not write into `out`
  EXPECT_EQ(out[0], -1);
}

TEST_F(RouterTest, DrainWaitsForFramesRoutedWithOlderTables) {
  auto r = make(options());
  std::vector<int32_t> two = {2};
  std::vector<float> out(hidden);
  auto batch = r->submit(0, x.data(), 1, two.data(), 1, out.data());
  r->set_table(table(2));
  bool drained = false;
  r->when_drained(2, [&] { drained = true; });
  EXPECT_FALSE(drained);  // a version-1 frame is still out
  auto f = s.take();
  answer(f);
  batch->wait();
  EXPECT_TRUE(drained);
  bool now = false;
  r->when_drained(2, [&] { now = true; });
  EXPECT_TRUE(now);
}

TEST_F(RouterTest, CountsRoutedTokensPerExpert) {
  auto r = make(options());
  auto batch = r->submit(1, x.data(), 2, ids.data(), 2, y.data());
  while (s.pending() > 0) {
    auto f = s.take();
    answer(f);
  }
  batch->wait();
  auto load = r->load();
  ASSERT_EQ(load.tokens.size(), 8u);
  EXPECT_EQ(load.tokens[4 + 1], 2);  // layer 1, expert 1: both tokens
  EXPECT_EQ(load.tokens[4 + 2], 1);
  EXPECT_EQ(load.tokens[4 + 3], 1);
  EXPECT_EQ(load.tokens[0 + 1], 0);  // layer 0 saw nothing
  EXPECT_GT(load.rtt_s[2], 0);       // n2 answered once
}

TEST(LoadWindow, ForgetsSecondsThatLeftTheWindow) {
  load_window w(2, 3);
  w.add(0, 5, 100);
  w.add(1, 1, 101);
  w.add(0, 2, 102);
  EXPECT_EQ(w.totals(102), (std::vector<double>{7, 1}));
  EXPECT_EQ(w.totals(103), (std::vector<double>{2, 1}));  // second 100 left
  EXPECT_EQ(w.totals(110), (std::vector<double>{0, 0}));
}

}  // namespace
}  // namespace xmesh::actors
