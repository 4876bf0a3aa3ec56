// Who may give orders on an authenticated cluster's control plane. Every holder of a cluster
// certificate gets through TLS; beyond that, only the coordinator's process may push a node a
// table or order it to load, retire or stop, only the process that registered a node may beat
// for it, and only the operator's key may sign an order to the coordinator. Here the command
// line's own connection (a member, not the coordinator) tries each, and a member's key signs
// orders: every one is refused with a line saying why, nothing changes, and a request afterwards
// is still bit-identical to the single-process run.
#include <gtest/gtest.h>

#include <fstream>

#include "actors/system.hpp"
#include "tests/support/free_ports.hpp"
#include "tests/support/paths.hpp"
#include "tests/support/run_process.hpp"
#include "transport/gate/tls.hpp"

namespace xmesh {
namespace {

using namespace testing_support;
using namespace std::chrono_literals;

// What a request's refusal says (empty when it was carried out).
template <class T, class... Ts>
std::string refusal(actors::proven_connection& c, Ts&&... msg) {
  try {
    (void)actors::ask<T>(*c.runtime->system, c.node, 10s, "order", std::forward<Ts>(msg)...);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

TEST(HostileOrders, OnlyTheCoordinatorTheRegisteredProcessAndTheOperatorGiveOrders) {
  temp_dir d;
  auto model = d.path() / "model";
  ASSERT_EQ(0, run_xmesh({"gen-model", "--family", "mixtral", "--preset", "tiny", "--seed", "3",
                          "--out", model})
                   .status);
  auto p = free_ports(6);
  auto path = d.path() / "cluster.yaml";
  std::ofstream(path) << "model: " << model.string() << "\ntransport: zmq\nplacement: static\n"
                      << "static_placement: {experts-a: [0, 1, 2, 3, 4, 5, 6, 7], experts-b: [0]}\n"
                      << "nodes:\n  - {name: head, control_port: " << p[0]
                      << ", data_port: " << p[1] << ", roles: [coordinator, head]}\n"
                      << "  - {name: experts-a, control_port: " << p[2] << ", data_port: " << p[3]
                      << ", roles: [experts]}\n"
                      << "  - {name: experts-b, control_port: " << p[4] << ", data_port: " << p[5]
                      << ", roles: [experts]}\n";
  std::string env = "XMESH_BIN=" + shell_quote(xmesh_bin().string()) +
                    " XMESH_RUN_DIR=" + shell_quote((d.path() / "run").string());
  std::string local = env + " " + shell_quote((source_dir() / "deploy/local.sh").string());
  ASSERT_EQ(0, std::system((local + " up " + shell_quote(path.string()) + " >/dev/null").c_str()));
  struct down_at_exit {
    std::string cmd;
    ~down_at_exit() { (void)std::system(cmd.c_str()); }
  } down{local + " down " + shell_quote(path.string()) + " >/dev/null"};
  std::vector<std::string> generate = {"generate", "--model",     model.string(),
                                       "--tokens", "3,1,4,1,5",   "--max-new-tokens",
                                       "5",        "--ignore-eos"};
  auto oracle = run_xmesh(generate);
  ASSERT_EQ(0, oracle.status) << oracle.err;

  auto cluster = actors::load_cluster(path);
  auto head = actors::connect_proven(cluster, cluster.node("head"), 10000ms);
  auto experts = actors::connect_proven(cluster, cluster.node("experts-a"), 10000ms);
  auto table = actors::ask<actors::placement_table>(*head.runtime->system, head.node, 10s,
                                                    "placement", actors::placement_atom_v);
  // Orders to nodes: only from the coordinator's process.
  EXPECT_EQ(refusal<actors::acknowledged>(experts, actors::stop_atom_v),
            "order: node 'experts-a' takes a stop only from its coordinator");
  EXPECT_EQ(refusal<actors::acknowledged>(experts, actors::retire_atom_v, int64_t{0}, int64_t{3}),
            "order: node 'experts-a' takes a retirement only from its coordinator");
  EXPECT_EQ(refusal<actors::expert_loaded>(experts, actors::load_atom_v, int64_t{0}, int64_t{0},
                                           int64_t{0}, std::string(), std::string(), uint64_t{0}),
            "order: node 'experts-a' takes a load only from its coordinator");
  auto forged = table;
  forged.version += 100;
  forged.replica_node.assign(forged.replica_node.size(), 0);  // everything on one node
  EXPECT_EQ(refusal<actors::acknowledged>(head, actors::placement_atom_v, forged),
            "order: node 'head' takes a placement table only from its coordinator");
  // Beats for another node do not count (it is told to register, which its certificate forbids).
  EXPECT_FALSE(actors::ask<bool>(*head.runtime->system, head.node, 10s, "heartbeat",
                                 actors::heartbeat_atom_v, std::string("experts-b")));
  // Orders to the coordinator: only under the operator's signature.
  actors::move_order retire{actors::move_order::retire, 0, 0, "experts-b", ""};
  EXPECT_EQ(
      refusal<actors::placement_table>(head, actors::move_atom_v, retire, actors::operator_proof{}),
      "order: an order without the operator's signature is refused");
  auto by_node = transport::sign_claim(
      transport::tls_identity_in(cluster.security.keys, "experts-a"), actors::order_text(retire));
  EXPECT_EQ(refusal<actors::placement_table>(
                head, actors::move_atom_v, retire,
                actors::operator_proof{by_node.certificate_pem, by_node.signature}),
            "order: an order signed by 'experts-a' is refused: orders take the operator's key");
  auto other = retire;
  other.expert = 1;  // a signature covers its own order only
  auto by_operator = transport::sign_claim(
      transport::tls_identity_in(cluster.security.keys, "operator"), actors::order_text(retire));
  EXPECT_NE(refusal<actors::placement_table>(
                head, actors::move_atom_v, other,
                actors::operator_proof{by_operator.certificate_pem, by_operator.signature})
                .find("order: an order is refused: "),
            std::string::npos);
  EXPECT_EQ(refusal<actors::placement_table>(head, actors::drain_atom_v, std::string("experts-b"),
                                             actors::operator_proof{}),
            "order: an order without the operator's signature is refused");
  EXPECT_EQ(
      refusal<actors::rebalance_report>(head, actors::rebalance_atom_v, actors::operator_proof{}),
      "order: an order without the operator's signature is refused");

  // Nothing changed: the same table, every node up and beating, the same output.
  std::this_thread::sleep_for(1500ms);  // past a few heartbeat periods
  auto after = actors::ask<actors::placement_table>(*head.runtime->system, head.node, 10s,
                                                    "placement", actors::placement_atom_v);
  EXPECT_EQ(after.version, table.version);
  auto status = run_xmesh({"cluster", "status", "--cluster", path.string()});
  EXPECT_EQ(status.status, 0) << status.out << status.err;
  generate.insert(generate.end(), {"--cluster", path.string()});
  auto through = run_xmesh(generate);
  ASSERT_EQ(0, through.status) << through.err;
  EXPECT_EQ(through.out, oracle.out);
  // The operator's own orders still go through.
  auto replicate = run_xmesh({"cluster", "replicate", "--cluster", path.string(), "--layer", "0",
                              "--expert", "3", "--to", "experts-b"});
  EXPECT_EQ(replicate.status, 0) << replicate.out << replicate.err;
}

}  // namespace
}  // namespace xmesh
