// The cluster file: valid files parse with defaults; every fault is one line naming the field.
#include "actors/cluster_config.hpp"

#include <gtest/gtest.h>

#include "actors/coordinator.hpp"
#include "actors/placement_table.hpp"

namespace xmesh::actors {
namespace {

const char* three_nodes = R"(model: m
transport: ucx
nodes:
  - {name: head, control_port: 1000, data_port: 1001, roles: [coordinator, head], threads: 2}
  - {name: a, control_port: 1010, data_port: 1011, roles: [experts], memory_budget: 3GiB}
  - {name: b, host: 10.0.0.2, control_port: 1020, data_port: 1021, roles: [experts], memory_budget: 1GiB, device: edge}
)";

std::string error_of(const std::string& yaml) {
  try {
    parse_cluster(yaml, "c.yaml", "/base");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

std::string with(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

TEST(ClusterConfig, ParsesNodesRolesAndBudgets) {
  auto c = parse_cluster(three_nodes, "c.yaml", "/base");
  EXPECT_EQ(c.model, "/base/m");
  EXPECT_EQ(c.transport, "ucx");
  EXPECT_EQ(c.placement, "spread");
  ASSERT_EQ(c.nodes.size(), 3u);
  EXPECT_EQ(c.coordinator().name, "head");
  EXPECT_EQ(c.node("a").memory_budget_bytes, 3ll << 30);
  EXPECT_EQ(c.node("b").data_address("ucx"), "ucx://10.0.0.2:1021");
  EXPECT_EQ(c.node("b").data_address("zmq"), "tcp://10.0.0.2:1021");
  EXPECT_EQ(c.node("head").threads, 2);
  EXPECT_EQ(c.with_role(role::experts).size(), 2u);
  EXPECT_EQ(c.node("b").model_dir(c), "/base/m");  // no copy of its own: the cluster's model
}

TEST(ClusterConfig, ANodeMayReadItsOwnCopyOfTheModel) {
  auto c = parse_cluster(with(three_nodes, "device: edge}", "device: edge, model: m-q4}"), "c.yaml",
                         "/base");
  EXPECT_EQ(c.node("b").model_dir(c), "/base/m-q4");
  EXPECT_EQ(c.node("a").model_dir(c), "/base/m");
}

TEST(ClusterConfig, LinkProfilesBuiltInAndOwn) {
  auto text = with(std::string(three_nodes), "device: edge}", "device: edge, link: lte}");
  auto c = parse_cluster(text, "c.yaml", "/base");
  EXPECT_EQ(c.node("b").link, "lte");
  for (const char* p : {"datacenter", "wifi", "5g", "lte"}) EXPECT_TRUE(c.links.count(p)) << p;
  EXPECT_DOUBLE_EQ(c.links.at("lte").up.delay_s, 0.025);
  // A file's own profile, by direction; units for rate, delay and loss.
  auto own =
      "links:\n  sat: {up: {rate: 5mbit, delay: 300ms, jitter: 20ms, loss: 1%}, "
      "down: {rate: 50mbit, delay: 300ms}}\n" +
      with(std::string(three_nodes), "device: edge}", "device: edge, link: sat}");
  auto s = parse_cluster(own, "c.yaml", "/base").links.at("sat");
  EXPECT_DOUBLE_EQ(s.up.rate_bits_s, 5e6);
  EXPECT_DOUBLE_EQ(s.up.jitter_s, 0.02);
  EXPECT_DOUBLE_EQ(s.up.loss, 0.01);
  EXPECT_DOUBLE_EQ(s.down.rate_bits_s, 50e6);
  EXPECT_DOUBLE_EQ(s.down.loss, 0);
  EXPECT_EQ(error_of(with(std::string(three_nodes), "device: edge}", "device: edge, link: lt}")),
            "c.yaml: node 'b'.link: unknown profile 'lt' (5g, datacenter, lte, wifi)");
  auto bad = [&](const std::string& up) {
    return error_of("links:\n  x: {up: " + up + "}\n" + std::string(three_nodes));
  };
  EXPECT_EQ(bad("{rate: -5mbit}"),
            "c.yaml: links.x.up.rate: expected a rate like 50mbit or 1gbit, got '-5mbit'");
  EXPECT_EQ(bad("{loss: 150%}"), "c.yaml: links.x.up.loss: loss must be at most 100%");
  EXPECT_EQ(bad("{delay: 5ms, jitter: 10ms}"),
            "c.yaml: links.x.up.jitter: must not exceed the delay (packets are not reordered)");
  EXPECT_EQ(bad("{delai: 5ms}"),
            "c.yaml: links.x.up.delai: unknown setting (rate, delay, jitter, loss)");
}

TEST(ClusterConfig, ATypoNamesTheNearestKey) {
  EXPECT_EQ(error_of(with(std::string(three_nodes), "transport:", "placment: spread\ntransport:")),
            "c.yaml: placment: unknown key (did you mean 'placement'?)");
  EXPECT_EQ(error_of(with(std::string(three_nodes), "memory_budget: 3GiB", "memory_budgt: 3GiB")),
            "c.yaml: node 'a'.memory_budgt: unknown key (did you mean 'memory_budget'?)");
}

TEST(ClusterConfig, ReplicaChoiceIsOneOfThePolicies) {
  EXPECT_EQ(parse_cluster(three_nodes, "c.yaml", "/base").replica_choice, "least_outstanding");
  EXPECT_EQ(parse_cluster("replica_choice: latency\n" + std::string(three_nodes), "c.yaml", "/base")
                .replica_choice,
            "latency");
  EXPECT_EQ(error_of("replica_choice: fastest\n" + std::string(three_nodes)),
            "c.yaml: replica_choice: unknown policy 'fastest' (least_outstanding, latency)");
}

TEST(ClusterConfig, StoreMissesAreComputedOnTheNodeOrTheHead) {
  EXPECT_FALSE(parse_cluster(three_nodes, "c.yaml", "/base").store_misses_on_head);
  EXPECT_TRUE(parse_cluster("store_misses: head\n" + std::string(three_nodes), "c.yaml", "/base")
                  .store_misses_on_head);
  EXPECT_FALSE(parse_cluster("store_misses: node\n" + std::string(three_nodes), "c.yaml", "/base")
                   .store_misses_on_head);
  EXPECT_EQ(error_of("store_misses: everywhere\n" + std::string(three_nodes)),
            "c.yaml: store_misses: expected node or head, not 'everywhere'");
}

TEST(ClusterConfig, AStoresFallbackIsOnEveryExpertNodeAndBesideTheFile) {
  auto both = with(with(std::string(three_nodes), "memory_budget: 3GiB}",
                        "memory_budget: 3GiB, store: \"cache_fraction=0.25,fallback=q4\"}"),
                   "device: edge}", "device: edge, store: \"fallback=/abs/q4,cache=lru\"}");
  auto c = parse_cluster(both, "c.yaml", "/base");
  EXPECT_EQ(c.node("a").store, "cache_fraction=0.25,fallback=/base/q4");  // beside the file
  EXPECT_EQ(c.node("b").store, "fallback=/abs/q4,cache=lru");
  // A pair's precision must not depend on its replica: every expert node keeps a fallback.
  EXPECT_EQ(error_of(with(both, ", store: \"fallback=/abs/q4,cache=lru\"", "")),
            "c.yaml: node 'b'.store: with a low-precision fallback on node 'a', every node that "
            "hosts experts keeps one (store: ...,fallback=DIR), so a row's precision does not "
            "depend on its replica");
  EXPECT_EQ(error_of("store_misses: head\n" + both),
            "c.yaml: store_misses: head: with a low-precision fallback on node 'a' the misses "
            "compute on the node; choose one (store_misses: node)");
}

TEST(ClusterConfig, AuthenticatedByDefaultWithKeysBesideTheFile) {
  auto none = parse_cluster("security: none\n" + std::string(three_nodes), "c.yaml", "/base");
  EXPECT_FALSE(none.security.authenticated());
  EXPECT_TRUE(none.security.keys.empty());
  auto plain = parse_cluster(three_nodes, "/some/where/lab.yaml", "/base");
  EXPECT_TRUE(plain.security.authenticated());
  EXPECT_EQ(plain.security.keys, "/base/lab.keys");
  auto zmq = with(std::string(three_nodes), "transport: ucx", "transport: zmq");
  EXPECT_EQ(parse_cluster("security: {keys: k}\n" + zmq, "c.yaml", "/base").security.keys,
            "/base/k");
  // UCX too: both planes are authenticated whatever the back end
  EXPECT_EQ(parse_cluster("security: {keys: /k}\n" + std::string(three_nodes), "c.yaml", "/base")
                .security.keys,
            "/k");
  EXPECT_EQ(error_of("security: {key: k}\n" + zmq),
            "c.yaml: security.key: unknown key (did you mean 'keys'?)");
  EXPECT_EQ(error_of("security: open\n" + zmq),
            "c.yaml: security: expected none or a mapping (keys)");
}

TEST(ClusterConfig, DataConnectionCapsHaveDefaultsAndBounds) {
  auto plain = parse_cluster(three_nodes, "c.yaml", "/base");
  EXPECT_EQ(plain.data_connections.per_host, 64);
  EXPECT_EQ(plain.data_connections.total, 512);
  auto set =
      parse_cluster("data_connections: {per_host: 8, total: 100}\n" + std::string(three_nodes),
                    "c.yaml", "/base");
  EXPECT_EQ(set.data_connections.per_host, 8);
  EXPECT_EQ(set.data_connections.total, 100);
  EXPECT_EQ(error_of("data_connections: {per_host: 0}\n" + std::string(three_nodes)),
            "c.yaml: data_connections.per_host: must be in 1..1000000");
  EXPECT_EQ(error_of("data_connections: {per_host: 600}\n" + std::string(three_nodes)),
            "c.yaml: data_connections.per_host: must not exceed data_connections.total");
  EXPECT_EQ(error_of("data_connections: {per_hosts: 6}\n" + std::string(three_nodes)),
            "c.yaml: data_connections.per_hosts: unknown key (did you mean 'per_host'?)");
  EXPECT_EQ(error_of("data_connections: 6\n" + std::string(three_nodes)),
            "c.yaml: data_connections: expected a mapping (per_host, total)");
}

TEST(ClusterConfig, ComputeNiceHasADefaultAndBounds) {
  auto c = parse_cluster(
      with(three_nodes, "memory_budget: 3GiB}", "memory_budget: 3GiB, compute_nice: 0}"), "c.yaml",
      "/base");
  EXPECT_EQ(c.node("a").compute_nice, 0);
  EXPECT_EQ(c.node("b").compute_nice, 10);
  EXPECT_EQ(
      error_of(with(three_nodes, "memory_budget: 3GiB}", "memory_budget: 3GiB, compute_nice: 20}")),
      "c.yaml: node 'a'.compute_nice: must be in [0, 19] (how far expert computation yields to "
      "frame handling)");
  EXPECT_EQ(
      error_of(with(three_nodes, "memory_budget: 3GiB}", "memory_budget: 3GiB, compute_nice: -5}")),
      "c.yaml: node 'a'.compute_nice: must be in [0, 19] (how far expert computation yields to "
      "frame handling)");
}

TEST(ClusterConfig, PinComputeIsOnUnlessTurnedOff) {
  auto c = parse_cluster(
      with(three_nodes, "memory_budget: 3GiB}", "memory_budget: 3GiB, pin_compute: false}"),
      "c.yaml", "/base");
  EXPECT_FALSE(c.node("a").pin_compute);
  EXPECT_TRUE(c.node("b").pin_compute);
  EXPECT_EQ(
      error_of(with(three_nodes, "memory_budget: 3GiB}", "memory_budget: 3GiB, pin_compute: 2}")),
      "c.yaml: node 'a'.pin_compute: expected true or false, got '2'");
}

TEST(ClusterConfig, ErrorsNameTheField) {
  EXPECT_EQ(error_of("nodes: [a"),
            "c.yaml: not valid YAML: end of sequence flow not found (line 1)");
  EXPECT_EQ(error_of(with(three_nodes, "model: m\n", "")), "c.yaml: model: missing");
  EXPECT_EQ(error_of(with(three_nodes, "transport: ucx", "transport: rdma")),
            "c.yaml: transport: unknown transport 'rdma' (local, zmq, ucx)");
  EXPECT_EQ(error_of(with(three_nodes, "roles: [experts], memory_budget: 3GiB", "roles: [expert]")),
            "c.yaml: node 'a'.roles: unknown role 'expert' (roles: coordinator, head, experts)");
  EXPECT_EQ(error_of(with(three_nodes, "memory_budget: 3GiB", "memory_budget: lots")),
            "c.yaml: node 'a'.memory_budget: expected a size like 512MiB or 2GiB, got 'lots'");
  EXPECT_EQ(error_of(with(three_nodes, "data_port: 1011", "data_port: 70000")),
            "c.yaml: node 'a'.data_port: port out of range: 70000");
  EXPECT_EQ(error_of(with(three_nodes, "data_port: 1011", "data_port: 1001")),
            "c.yaml: node 'a': port 1001 on 127.0.0.1 used twice");
  EXPECT_EQ(error_of(with(three_nodes, "name: b,", "name: a,")),
            "c.yaml: node 'a': name used twice");
  EXPECT_EQ(error_of(with(three_nodes, "[coordinator, head]", "[head]")),
            "c.yaml: nodes: exactly one node must have the coordinator role");
  EXPECT_EQ(error_of(with(three_nodes, "device: edge", "device: tpu")),
            "c.yaml: node 'b'.device: unknown device class 'tpu' (cpu, gpu, edge)");
}

model::model_config tiny_model() {
  model::model_config m;
  m.num_layers = 2;
  m.num_experts = 8;
  return m;
}

TEST(PlacementTable, SpreadFollowsMemoryBudgets) {
  auto c = parse_cluster(three_nodes, "c.yaml", "/base");  // budgets 3 GiB and 1 GiB
  auto t = make_placement(c, tiny_model(), 1 << 20, 7);
  EXPECT_EQ(t.version, 7u);
  EXPECT_EQ(t.nodes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(hosted_experts(t, "a").size(), 12u);  // 6 of 8 experts, 2 layers
  EXPECT_EQ(hosted_experts(t, "b").size(), 4u);
  for (int64_t e = 0; e < 8; ++e) EXPECT_EQ(t.replicas(1, e).size(), 1u);
}

TEST(PlacementTable, StaticWithReplicasAndErrors) {
  std::string yaml =
      with(three_nodes, "nodes:",
           "placement: static\nstatic_placement: {a: [0, 1, 2, 3, 4, 5, 6, 7], b: [0, 1]}\nnodes:");
  auto t = make_placement(parse_cluster(yaml, "c.yaml", "/"), tiny_model(), 1 << 20, 1);
  EXPECT_EQ(t.replicas(0, 0).size(), 2u);
  EXPECT_EQ(t.replicas(0, 5).size(), 1u);
  EXPECT_TRUE(t.hosts(1, 1, 1));
  EXPECT_FALSE(t.hosts(1, 1, 2));

  std::string gap = with(
      three_nodes, "nodes:", "placement: static\nstatic_placement: {a: [0, 1, 2], b: [3]}\nnodes:");
  EXPECT_THROW(
      {
        try {
          make_placement(parse_cluster(gap, "c.yaml", "/"), tiny_model(), 1 << 20, 1);
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "static_placement: expert 4 has no replica");
          throw;
        }
      },
      std::runtime_error);
  // 1 GiB cannot hold node b's share of 2 GiB experts.
  EXPECT_THROW(
      make_placement(parse_cluster(three_nodes, "c.yaml", "/"), tiny_model(), 1ll << 30, 1),
      std::runtime_error);
}

TEST(CoordinatorState, TracksRegistrationAndSilence) {
  auto c = parse_cluster(three_nodes, "c.yaml", "/base");
  coordinator_state s(c, make_placement(c, tiny_model(), 1, 3), 1);
  EXPECT_EQ(s.status().missing, (std::vector<std::string>{"head", "a", "b"}));
  s.register_node({"a", {"experts"}, "ucx://127.0.0.1:1011"});
  s.register_node({"head", {"coordinator", "head"}, ""});
  auto st = s.status();
  EXPECT_EQ(st.registered, (std::vector<std::string>{"head", "a"}));
  EXPECT_EQ(st.missing, (std::vector<std::string>{"b"}));
  EXPECT_EQ(st.placement_version, 3u);
  EXPECT_TRUE(s.silent_nodes(std::chrono::hours(1)).empty());
  EXPECT_EQ(s.silent_nodes(std::chrono::milliseconds(-1)).size(), 2u);
}

}  // namespace
}  // namespace xmesh::actors
