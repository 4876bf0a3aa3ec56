// The coordinator's state and the rebalance planner, without actors or processes.
#include "actors/coordinator.hpp"

#include <gtest/gtest.h>

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

struct CoordinatorTest : ::testing::Test {
  cluster_config cluster = parse_cluster(cluster_text, "c.yaml", "/");
  // 1 MiB experts: 2 layers x 4 experts spread over a and b, 4 each; budgets hold 6.
  coordinator_state state{cluster, make_placement(cluster, tiny(), 1 << 20, 1), 1 << 20};
  CoordinatorTest() {
    state.register_node({"a", {"experts"}, "tcp://a", {}});
    state.register_node({"b", {"experts"}, "tcp://b", {}});
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
  EXPECT_EQ(state.add_replica(m).version, 2u);
  EXPECT_TRUE(state.table().hosts(a, 0, 0));  // both replicas serve while heads switch
  EXPECT_TRUE(state.table().hosts(b, 0, 0));
  EXPECT_EQ(state.remove_replica(m).version, 3u);
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
  // It comes back as a new member holding nothing.
  state.register_node({"a", {"experts"}, "tcp://a", {}});
  EXPECT_FALSE(state.is_dead("a"));
  EXPECT_EQ(state.resident("a"), 0);
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
