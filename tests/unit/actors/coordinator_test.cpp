// The coordinator's state and the rebalance planner, without actors or processes.
#include "actors/coordinator.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "actors/rebalance.hpp"

namespace xmesh::actors {
namespace {

const char* cluster_text = R"(model: m
transport: zmq
nodes:
  - {name: head, control_port: 1000, data_port: 1001, roles: [coordinator, head]}
  - {name: a, control_port: 1010, data_port: 1011, roles: [experts], memory_budget: 6MiB}
  - {name: b, control_port: 1020, data_port: 1021, roles: [experts], memory_budget: 6MiB}
)";

model::model_config tiny() {
  model::model_config c;
  c.num_layers = 2;
  c.num_experts = 4;
  return c;
}

// What an expert node tells the coordinator when it registers holding `resident`.
node_info expert_node(const std::string& name, std::vector<int64_t> resident,
                      uint64_t version = 0) {
  // a and b at their cluster-file addresses; others (joining) anywhere.
  std::string address = name == "a"   ? "tcp://127.0.0.1:1011"
                        : name == "b" ? "tcp://127.0.0.1:1021"
                                      : "tcp://" + name;
  node_info i{name, {"experts"}, address, {}};
  i.model = "m (config 1)";
  i.resident = std::move(resident);
  i.version = version;
  return i;
}

struct CoordinatorTest : ::testing::Test {
  cluster_config cluster = parse_cluster(cluster_text, "c.yaml", "/");
  // 1 MiB experts: 2 layers x 4 experts spread over a and b, 4 each; budgets hold 6.
  placement_table planned = make_placement(cluster, tiny(), 1 << 20, 1);
  coordinator_state state{cluster, planned, 1 << 20, "m (config 1)"};
  CoordinatorTest() {
    // Starting nodes load their assignment, then register holding it.
    state.register_node(expert_node("a", hosted_experts(state.assignment("a"), "a")));
    state.register_node(expert_node("b", hosted_experts(state.assignment("b"), "b")));
  }
  move_order order(uint8_t kind, int64_t layer, int64_t expert, std::string from, std::string to) {
    return {kind, layer, expert, std::move(from), std::move(to)};
  }
};

TEST_F(CoordinatorTest, MigrationIsMakeBeforeBreakWithVersionsAndMemory) {
  const auto& t = state.table();
  int32_t a = node_index(t, "a"), b = node_index(t, "b");
  ASSERT_TRUE(t.hosts(a, 0, 0));
  auto m = order(move_order::migrate, 0, 0, "a", "b");
  EXPECT_EQ(state.check(m), "");
  EXPECT_EQ(state.resident("b"), 4);
  state.reserve(m);  // loading: b's memory is taken before anything is published
  EXPECT_EQ(state.resident("b"), 5);
  const uint64_t v = t.version;  // 3: one version per registration
  EXPECT_EQ(state.add_replica(m).version, v + 1);
  EXPECT_TRUE(state.table().hosts(a, 0, 0));  // both replicas serve while heads switch
  EXPECT_TRUE(state.table().hosts(b, 0, 0));
  EXPECT_EQ(state.remove_replica(m).version, v + 2);
  EXPECT_FALSE(state.table().hosts(a, 0, 0));
  EXPECT_EQ(state.resident("a"), 4);  // draining: still in a's memory
  state.release(m);
  EXPECT_EQ(state.resident("a"), 3);
  auto r = state.report();
  EXPECT_EQ(r.bytes_moved, 1 << 20);
  EXPECT_EQ(r.replications, 1);
  EXPECT_EQ(r.retirements, 1);
}

TEST_F(CoordinatorTest, RefusesOrdersThatBreakAnInvariant) {
  EXPECT_EQ(state.check(order(move_order::retire, 0, 0, "a", "")),
            "it would leave expert 0 of layer 0 without a replica");
  EXPECT_EQ(state.check(order(move_order::migrate, 0, 0, "a", "a")),
            "source and destination are the same node");
  EXPECT_EQ(state.check(order(move_order::replicate, 0, 0, "", "a")),
            "'a' already hosts expert 0 of layer 0");
  EXPECT_EQ(state.check(order(move_order::replicate, 0, 0, "", "head")),
            "'head' is not an expert node of this cluster");
  EXPECT_EQ(state.check(order(move_order::replicate, 5, 0, "", "b")),
            "layer 5 is out of range (the model has 2)");
  EXPECT_EQ(state.check(order(move_order::retire, 0, 1, "a", "")),
            "'a' does not host expert 1 of layer 0");
  // Fill b to its budget of 6: the next replica is refused, naming the budget.
  for (auto [l, e] : {std::pair{0, 0}, {0, 2}}) {
    auto o = order(move_order::replicate, l, e, "", "b");
    ASSERT_EQ(state.check(o), "");
    state.reserve(o);
    state.add_replica(o);
  }
  EXPECT_EQ(state.check(order(move_order::replicate, 1, 0, "", "b")),
            "'b' memory budget holds 6 experts of 1048576 bytes and 6 are resident");
  // With two replicas, one may retire.
  EXPECT_EQ(state.check(order(move_order::retire, 0, 0, "a", "")), "");
}

TEST_F(CoordinatorTest, ADeadNodeLosesItsReplicasAndItsOrphansFindRoom) {
  // a holds experts 0, 2 of each layer, b holds 1, 3 (spread); give expert 0 a replica on b.
  auto o = order(move_order::replicate, 0, 0, "", "b");
  state.reserve(o);
  state.add_replica(o);
  const uint64_t before = state.table().version;
  auto orphans = state.declare_dead("a");
  EXPECT_TRUE(state.is_dead("a"));
  EXPECT_EQ(state.table().version, before + 1);
  EXPECT_EQ(state.resident("a"), 0);
  // Expert 0 of layer 0 kept its replica on b; a's other three experts are orphans.
  EXPECT_EQ(orphans, (std::vector<int64_t>{2, 4, 6}));
  EXPECT_EQ(orphaned_experts(state.table()), orphans);
  check_placement(state.table(), tiny());  // a table with orphans is valid
  EXPECT_EQ(state.roomiest_node_for(0, 2), "b");
  EXPECT_EQ(state.roomiest_node_for(0, 0), "");  // b has it, a is dead
  EXPECT_EQ(state.check(order(move_order::replicate, 0, 2, "", "a")), "'a' is dead");
  // Restarted, it would load what it held when last seen alive.
  EXPECT_EQ(hosted_experts(state.assignment("a"), "a"), (std::vector<int64_t>{0, 2, 4, 6}));
  // It comes back as a new member holding nothing.
  state.register_node(expert_node("a", {}));
  EXPECT_FALSE(state.is_dead("a"));
  EXPECT_EQ(state.resident("a"), 0);
}

TEST_F(CoordinatorTest, TheLiveTableIsWhatNodesReport) {
  // A fresh coordinator's live table holds no replica until nodes report theirs.
  coordinator_state fresh{cluster, planned, 1 << 20, "m (config 1)"};
  EXPECT_TRUE(fresh.table().replica_node.empty());
  EXPECT_FALSE(fresh.settled());  // a and b have not registered: orphans are not re-placed yet
  // A node that kept serving through a coordinator restart reports what it holds (a migration
  // had moved expert 1 of layer 0 to it) and the newest version it saw: the table continues
  // after that version, so heads do not ignore it as stale.
  EXPECT_TRUE(fresh.register_node(expert_node("a", {0, 1, 2, 4, 6}, 40)));
  EXPECT_EQ(fresh.table().version, 41u);
  EXPECT_EQ(hosted_experts(fresh.table(), "a"), (std::vector<int64_t>{0, 1, 2, 4, 6}));
  EXPECT_EQ(fresh.resident("a"), 5);
  EXPECT_TRUE(fresh.register_node(expert_node("b", {3, 5, 7})));
  EXPECT_TRUE(fresh.settled());
  EXPECT_EQ(orphaned_experts(fresh.table()), std::vector<int64_t>{});
  // Registering again with the same holdings changes nothing.
  EXPECT_FALSE(fresh.register_node(expert_node("b", {3, 5, 7})));
  // A node that saw exactly the coordinator's version gets a newer one, never a different table
  // under the same number.
  const uint64_t v = fresh.table().version;
  EXPECT_TRUE(fresh.register_node(expert_node("b", {3, 5, 7}, v)));
  EXPECT_EQ(fresh.table().version, v + 1);
}

TEST_F(CoordinatorTest, ANameBelongsToOneNode) {
  auto impostor = expert_node("a", {});
  impostor.data_address = "tcp://elsewhere";
  EXPECT_EQ(state.admit(impostor),
            "node 'a' is in the cluster file with other roles or address; choose another name");
  node_info head_as_experts{"head", {"experts"}, "tcp://head", {}, "m (config 1)"};
  EXPECT_NE(state.admit(head_as_experts), "");
  auto c = expert_node("c", {});
  state.register_node(c);
  c.data_address = "tcp://other";
  EXPECT_EQ(state.admit(c), "node name 'c' is taken by a live node at tcp://c");
}

TEST_F(CoordinatorTest, RefusesAnotherModelNamingBoth) {
  auto other = expert_node("a", {});
  other.model = "qwen (config 2)";
  EXPECT_EQ(state.admit(other),
            "node 'a' serves model qwen (config 2) but the cluster serves m (config 1)");
  EXPECT_EQ(state.admit(expert_node("a", {})), "");
  node_info stranger{"c", {"head"}, "", {}, "m (config 1)"};
  EXPECT_EQ(state.admit(stranger),
            "node 'c' is not in the cluster file; only expert nodes may join");
}

TEST_F(CoordinatorTest, ANodeNotInTheFileJoinsWithItsBudget) {
  auto c = expert_node("c", {});
  c.memory_budget_bytes = 3 << 20;  // "tcp://c": not in the file, so any free name works
  EXPECT_EQ(state.admit(c), "");
  EXPECT_TRUE(state.register_node(c));
  EXPECT_EQ(node_index(state.table(), "c"), 2);
  EXPECT_EQ(state.capacity("c"), 3);
  EXPECT_EQ(state.roomiest_node_for(0, 0), "c");  // empty, while b has room for 2 more
  EXPECT_EQ(state.status().registered, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(CoordinatorRejoin, ANodeBackFromTheDeadWaitsAndAFlappingOneWaitsLonger) {
  auto cluster = parse_cluster(cluster_text, "c.yaml", "/");
  cluster.heartbeat.rejoin_s = 0.05;
  coordinator_state s{cluster, make_placement(cluster, tiny(), 1 << 20, 1), 1 << 20};
  s.register_node(expert_node("a", {0, 2, 4, 6}));
  s.register_node(expert_node("b", {1, 3, 5, 7}));
  s.declare_dead("a");
  EXPECT_FALSE(s.heartbeat("a"));  // a stopped node that wakes up learns it must register again
  // Back with what it held: counted as a member, but it serves again only after steady beats,
  // also when it registers twice (beats answered before its first registration arrived).
  EXPECT_FALSE(s.register_node(expert_node("a", {0, 2, 4, 6})));
  EXPECT_FALSE(s.register_node(expert_node("a", {0, 2, 4, 6})));
  EXPECT_TRUE(s.heartbeat("a"));
  EXPECT_EQ(s.status().rejoining, std::vector<std::string>{"a"});
  EXPECT_TRUE(hosted_experts(s.table(), "a").empty());
  EXPECT_FALSE(s.placeable("a"));
  EXPECT_TRUE(s.finish_rejoins().empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_EQ(s.finish_rejoins(), std::vector<std::string>{"a"});
  EXPECT_EQ(hosted_experts(s.table(), "a"), (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_TRUE(s.placeable("a"));
  // Dies again within the minute: the wait doubles (0.1 s).
  s.declare_dead("a");
  s.register_node(expert_node("a", {0, 2, 4, 6}));
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_TRUE(s.finish_rejoins().empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_EQ(s.finish_rejoins(), std::vector<std::string>{"a"});
  auto st = s.status();
  EXPECT_EQ(st.deaths, 2);
  EXPECT_EQ(st.rejoins, 2);
}

TEST_F(CoordinatorTest, DrainRetiresOrMigratesEverythingOrRefusesUpFront) {
  // b's budget (6) has room for 2 of a's 4 sole replicas: draining a is refused, naming one.
  EXPECT_THROW(
      {
        try {
          state.plan_drain("a");
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(),
                       "cannot drain 'a': expert 0 of layer 1 has its only replica there and no "
                       "other expert node has room for it");
          throw;
        }
      },
      std::runtime_error);
  EXPECT_TRUE(state.placeable("a"));  // nothing changed
  // With a second replica of expert 0 of layer 0 on b and a larger budget there, 1 retirement
  // and 3 migrations empty a.
  cluster.nodes[2].memory_budget_bytes = 8 << 20;
  coordinator_state roomy{cluster, planned, 1 << 20, "m (config 1)"};
  roomy.register_node(expert_node("a", {0, 2, 4, 6}));
  roomy.register_node(expert_node("b", {0, 1, 3, 5, 7}));
  auto orders = roomy.plan_drain("a");
  ASSERT_EQ(orders.size(), 4u);
  EXPECT_EQ(orders[0].kind, move_order::retire);  // expert 0 of layer 0 stays on b
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(orders[i].kind, move_order::migrate);
    EXPECT_EQ(orders[i].to, "b");
  }
  EXPECT_FALSE(roomy.placeable("a"));
  EXPECT_EQ(roomy.check(order(move_order::replicate, 0, 1, "", "a")), "'a' is being drained");
  roomy.end_drain("a", true);
  EXPECT_EQ(roomy.status().drained, std::vector<std::string>{"a"});
  EXPECT_EQ(roomy.status().registered, std::vector<std::string>{"b"});
}

TEST(PlacementTable, WithReplicaKeepsReplicasSortedAndBumpsTheVersion) {
  auto c = parse_cluster(cluster_text, "c.yaml", "/");
  auto t = make_placement(c, tiny(), 1, 4);
  auto u = with_replica(t, 1, 3, 0, true);
  EXPECT_EQ(u.version, 5u);
  auto r = u.replicas(1, 3);
  EXPECT_TRUE(std::is_sorted(r.begin(), r.end()));
  EXPECT_EQ(r.size(), 2u);
  check_placement(u, tiny());
  EXPECT_THROW(with_replica(u, 1, 3, 0, true), std::runtime_error);
  auto back = with_replica(u, 1, 3, 0, false);
  EXPECT_EQ(back.replica_node, t.replica_node);
}

TEST(Rebalance, MovesLoadOffTheHotNodeAndReplicatesTheHottestExpert) {
  placement_table t;
  t.version = 1;
  t.num_layers = 1;
  t.num_experts = 4;
  t.nodes = {"a", "b"};
  t.addresses = {"x", "y"};
  // Experts 0 and 1 (the hot ones) both on a.
  t.replica_node = {0, 0, 1, 1};
  t.replica_begin = {0, 1, 2, 3, 4};
  rebalance_inputs in;
  in.tokens = {100, 60, 5, 5};
  in.speed = {1, 1};
  in.capacity = {3, 3};
  in.moe_layers = {0};
  in.replicas_per_layer = 5;
  in.hysteresis = 0;
  double before = measure_balancedness(t, in);
  auto plan = plan_rebalance(t, in);
  EXPECT_NEAR(plan.balancedness_before, before, 1e-12);
  EXPECT_GT(plan.balancedness_after, plan.balancedness_before + 0.2);
  // Applying the orders in their order keeps every expert served and the budgets held.
  for (const auto& o : plan.orders) {
    int32_t from = node_index(t, o.from), to = node_index(t, o.to);
    if (o.kind != move_order::retire) t = with_replica(t, o.layer, o.expert, to, true);
    if (o.kind != move_order::replicate) t = with_replica(t, o.layer, o.expert, from, false);
  }
  for (int32_t n = 0; n < 2; ++n) {
    int count = 0;
    for (int e = 0; e < 4; ++e) count += t.hosts(n, 0, e);
    EXPECT_LE(count, 3);
  }
  EXPECT_NEAR(measure_balancedness(t, in), plan.balancedness_after, 1e-9);
  EXPECT_EQ(t.replica_node.size(), 5u);  // the fifth slot went to a replica
  check_placement(t, [] {
    model::model_config c;
    c.num_layers = 1;
    c.num_experts = 4;
    return c;
  }());
}

TEST(Rebalance, ANodeBehindASlowLinkCountsAsSlower) {
  // Both nodes compute a row in 100 us and serve a frame in 400 us; frames carry 4 rows. Node 1's
  // frames take 2.4 ms to come back instead of 0.5 ms: 2 ms more per frame, 500 us more per row.
  host_speed fast{1000, 0.1, 0, 250, 0.1}, slow = fast;
  EXPECT_NEAR(seconds_per_row(fast, 0.0005), 100e-6 + 100e-6 / 4, 1e-12);
  EXPECT_NEAR(seconds_per_row(slow, 0.0024), 100e-6 + 2000e-6 / 4, 1e-12);
  EXPECT_EQ(seconds_per_row(host_speed{}, 0.001), 0);  // nothing measured yet
  auto speeds = relative_speeds({seconds_per_row(fast, 0.0005), seconds_per_row(slow, 0.0024), 0});
  EXPECT_GT(speeds[0], 4 * speeds[1]);
  EXPECT_NEAR((speeds[0] + speeds[1]) / 2, 1.0, 1e-12);  // relative to the measured mean
  EXPECT_EQ(speeds[2], 1.0);
  // With those speeds the planner gives the fast node the hot experts' work.
  placement_table t;
  t.num_layers = 1;
  t.num_experts = 4;
  t.nodes = {"fast", "slow"};
  t.addresses = {"x", "y"};
  t.replica_node = {1, 1, 0, 0};  // the hot experts 0 and 1 behind the slow link
  t.replica_begin = {0, 1, 2, 3, 4};
  rebalance_inputs in;
  in.tokens = {50, 50, 5, 5};
  in.speed = {speeds[0], speeds[1]};
  in.capacity = {4, 4};
  in.moe_layers = {0};
  in.replicas_per_layer = 4;
  in.hysteresis = 0;
  auto plan = plan_rebalance(t, in);
  for (const auto& o : plan.orders) {
    if (o.kind != move_order::retire)
      t = with_replica(t, o.layer, o.expert, node_index(t, o.to), true);
    if (o.kind != move_order::replicate)
      t = with_replica(t, o.layer, o.expert, node_index(t, o.from), false);
  }
  EXPECT_TRUE(t.hosts(0, 0, 0) && t.hosts(0, 0, 1));
  EXPECT_GT(plan.balancedness_after, plan.balancedness_before);
}

TEST(Rebalance, NoLoadNoOrders) {
  placement_table t;
  t.num_layers = 1;
  t.num_experts = 2;
  t.nodes = {"a", "b"};
  t.addresses = {"x", "y"};
  t.replica_node = {0, 1};
  t.replica_begin = {0, 1, 2};
  rebalance_inputs in;
  in.tokens = {0, 0};
  in.speed = {1, 1};
  in.capacity = {2, 2};
  in.moe_layers = {0};
  EXPECT_TRUE(plan_rebalance(t, in).orders.empty());
}

}  // namespace
}  // namespace xmesh::actors
