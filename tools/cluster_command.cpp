// xmesh cluster: inspects a cluster file and the running cluster (used by deploy/local.sh), and
// changes the live placement (each order make-before-break, answered once carried out).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "actors/coordinator_actor.hpp"
#include "actors/system.hpp"
#include "model/expert_shard.hpp"
#include "model/weights.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"
#include "transport/gate/tls.hpp"
#include "transport/seal.hpp"
#include "transport/transport.hpp"

namespace xmesh::tools {

namespace {

using namespace std::chrono_literals;

const char* usage =
    "expected: xmesh cluster nodes|links|status|placement|rebalance|migrate|replicate|retire|drain|"
    "keygen|shard --cluster FILE ...";

int cluster_nodes(const actors::cluster_config& c) {
  for (const auto& n : c.nodes) std::printf("%s\n", n.name.c_str());
  return 0;
}

// One line per node for deploy/netns.sh: name, host, profile, then up and down as rate (bit/s),
// delay, jitter (s) and loss (fraction); "-" and zeros for a node without a link profile.
int cluster_links(const actors::cluster_config& c) {
  for (const auto& n : c.nodes) {
    actors::link_profile p;
    if (!n.link.empty()) p = c.links.at(n.link);
    std::printf("%s %s %s", n.name.c_str(), n.host.c_str(), n.link.empty() ? "-" : n.link.c_str());
    for (const auto* d : {&p.up, &p.down})
      std::printf(" %.0f %.6f %.6f %.6f", d->rate_bits_s, d->delay_s, d->jitter_s, d->loss);
    std::printf("\n");
  }
  return 0;
}

// The operator's signature over an order's text (none with security: none).
actors::operator_proof sign_order(const actors::cluster_config& c, const std::string& text) {
  if (!c.security.authenticated()) return {};
  auto claim = transport::sign_claim(transport::tls_identity_in(c.security.keys, "operator"), text);
  return {std::move(claim.certificate_pem), std::move(claim.signature)};
}

actors::proven_connection reach_coordinator(const actors::cluster_config& c) {
  return actors::connect_proven(c, c.coordinator(), std::chrono::milliseconds(2000), "coordinator");
}

// Exit 0 when every node of the file (but drained ones) is a live member.
int cluster_status(const actors::cluster_config& c, bool json) {
  auto conn = reach_coordinator(c);
  auto& rt = *conn.runtime;
  auto s = actors::ask<actors::cluster_status>(
      *rt.system, conn.node, 5s, "status from the coordinator", actors::status_atom_v);
  nlohmann::json j = {{"registered", s.registered},
                      {"missing", s.missing},
                      {"silent", s.silent},
                      {"dead", s.dead},
                      {"rejoining", s.rejoining},
                      {"drained", s.drained},
                      {"deaths", s.deaths},
                      {"rejoins", s.rejoins},
                      {"placement_version", s.placement_version}};
  // Every live member's own counters, asked all at once. A node that stalled (stopped, cut off)
  // may accept the connection and never answer: each gets 3 s, and the threads asking are
  // joined before the connection they borrow goes away (a bounded wait: the gate gives up on a
  // handshake after its deadline).
  std::vector<std::pair<std::string, std::future<actors::node_stats>>> asked;
  std::vector<std::thread> askers;
  for (const auto& name : s.registered) {
    if (std::find(s.silent.begin(), s.silent.end(), name) != s.silent.end()) continue;
    auto listed = std::find_if(c.nodes.begin(), c.nodes.end(),
                               [&](const actors::node_config& n) { return n.name == name; });
    if (listed == c.nodes.end()) continue;  // joined: its control address is not in the file
    std::promise<actors::node_stats> answer;
    asked.emplace_back(name, answer.get_future());
    askers.emplace_back([answer = std::move(answer), sys = rt.system.get(), gate = conn.gate.get(),
                         node = *listed]() mutable {
      try {
        auto a = actors::reach_node(*sys, *gate, node, std::chrono::milliseconds(2000));
        answer.set_value(actors::ask<actors::node_stats>(*sys, a, 3s, "stats of " + node.name,
                                                         actors::stats_atom_v));
      } catch (...) {
        answer.set_exception(std::current_exception());
      }
    });
  }
  const auto until = std::chrono::steady_clock::now() + 3s;
  nlohmann::json nodes = nlohmann::json::object();
  for (auto& [name, got] : asked) {
    if (got.wait_until(until) != std::future_status::ready) {
      nodes[name] = {{"error", "no answer within 3 s"}};
      continue;
    }
    actors::node_stats st;
    try {
      st = got.get();
    } catch (const std::exception& e) {
      nodes[name] = {{"error", e.what()}};
      continue;
    }
    nodes[name] = {
        {"frames_served", st.frames_served},          {"frames_dropped", st.frames_dropped},
        {"frames_shared", st.frames_shared},          {"expert_rows", st.expert_rows},
        {"expert_seconds", st.expert_seconds},        {"resident_bytes", st.resident_bytes},
        {"service_seconds", st.service_seconds},      {"frames_sent", st.frames_sent},
        {"encode_seconds", st.encode_seconds},        {"decode_seconds", st.decode_seconds},
        {"round_trip_seconds", st.round_trip_seconds}};
  }
  for (auto& t : askers) t.join();
  j["nodes"] = nodes;
  if (json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("registered: %zu of %zu nodes, placement version %llu\n", s.registered.size(),
                c.nodes.size(), static_cast<unsigned long long>(s.placement_version));
    auto list = [](const char* what, const std::vector<std::string>& names) {
      for (const auto& m : names) std::printf("%s: %s\n", what, m.c_str());
    };
    list("missing", s.missing);
    list("silent (no heartbeat within the timeout)", s.silent);
    list("dead", s.dead);
    list("rejoining", s.rejoining);
    list("drained", s.drained);
    if (s.deaths > 0)
      std::printf("nodes declared dead so far: %lld, rejoined: %lld\n",
                  static_cast<long long>(s.deaths), static_cast<long long>(s.rejoins));
  }
  std::fflush(stdout);
  std::_Exit(s.missing.empty() && s.silent.empty() && s.dead.empty() ? 0 : 3);
}

nlohmann::json table_json(const actors::placement_table& t) {
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t l = 0; l < t.num_layers; ++l) {
    nlohmann::json experts = nlohmann::json::array();
    for (int64_t e = 0; e < t.num_experts; ++e) {
      nlohmann::json names = nlohmann::json::array();
      for (int32_t n : t.replicas(l, e)) names.push_back(t.nodes[n]);
      experts.push_back(names);
    }
    layers.push_back(experts);
  }
  return {{"version", t.version}, {"nodes", t.nodes}, {"replicas", layers}};
}

int cluster_placement(const actors::cluster_config& c, bool json) {
  auto conn = reach_coordinator(c);
  auto r = actors::ask<actors::placement_report>(*conn.runtime->system, conn.node, 10s,
                                                 "placement from the coordinator",
                                                 actors::placement_atom_v, actors::report_atom_v);
  if (json) {
    auto j = table_json(r.table);
    j["bytes_moved"] = r.bytes_moved;
    j["replications"] = r.replications;
    j["retirements"] = r.retirements;
    j["failed_moves"] = r.failed_moves;
    j["rebalancing"] = r.rebalancing;
    j["balancedness"] = r.balancedness;
    j["tokens"] = r.tokens;
    j["rebalances"] = r.rebalances;
    j["automatic_rebalances"] = r.automatic;
    std::printf("%s\n", j.dump().c_str());
  } else {
    const auto& t = r.table;
    std::printf("placement version %llu, %lld bytes moved, %lld replications, %lld retirements\n",
                static_cast<unsigned long long>(t.version), static_cast<long long>(r.bytes_moved),
                static_cast<long long>(r.replications), static_cast<long long>(r.retirements));
    for (size_t n = 0; n < t.nodes.size(); ++n) {
      int64_t count = 0;
      for (int64_t l = 0; l < t.num_layers; ++l)
        for (int64_t e = 0; e < t.num_experts; ++e) count += t.hosts(static_cast<int32_t>(n), l, e);
      std::printf("%s: %lld replicas\n", t.nodes[n].c_str(), static_cast<long long>(count));
    }
  }
  std::fflush(stdout);
  std::_Exit(0);
}

int cluster_rebalance(const actors::cluster_config& c, bool json) {
  auto conn = reach_coordinator(c);
  auto r = actors::ask<actors::rebalance_report>(*conn.runtime->system, conn.node, 3600s,
                                                 "rebalance", actors::rebalance_atom_v,
                                                 sign_order(c, actors::rebalance_text()));
  nlohmann::json j = {{"balancedness_before", r.balancedness_before},
                      {"balancedness_after", r.balancedness_after},
                      {"orders", r.orders},
                      {"version", r.version},
                      {"note", r.note}};
  if (json)
    std::printf("%s\n", j.dump().c_str());
  else
    std::printf("rebalanced: %lld orders, balancedness %.3f -> %.3f, version %llu%s%s\n",
                static_cast<long long>(r.orders), r.balancedness_before, r.balancedness_after,
                static_cast<unsigned long long>(r.version), r.note.empty() ? "" : ": ",
                r.note.c_str());
  std::fflush(stdout);
  std::_Exit(0);
}

// migrate / replicate / retire: one order, answered once done or refused with the reason.
int cluster_move(const std::string& what, int argc, char** argv) {
  std::vector<flag_spec> specs = {{"--cluster", true, "cluster file (YAML)"},
                                  {"--layer", true, "layer index"},
                                  {"--expert", true, "expert index"}};
  std::string synopsis = "--cluster FILE --layer L --expert E ";
  if (what == "migrate") {
    specs.push_back({"--from", true, "node losing its replica"});
    specs.push_back({"--to", true, "node gaining one"});
    synopsis += "--from NODE --to NODE";
  } else if (what == "replicate") {
    specs.push_back({"--to", true, "node gaining a replica"});
    synopsis += "--to NODE";
  } else {
    specs.push_back({"--node", true, "node losing its replica"});
    synopsis += "--node NODE";
  }
  flags f("cluster " + what, synopsis, specs, argc, argv);
  auto c = actors::load_cluster(f.str("--cluster"));
  actors::move_order o;
  o.kind = what == "migrate"     ? actors::move_order::migrate
           : what == "replicate" ? actors::move_order::replicate
                                 : actors::move_order::retire;
  o.layer = f.integer("--layer");
  o.expert = f.integer("--expert");
  if (what == "migrate") o.from = f.str("--from");
  if (what == "retire") o.from = f.str("--node");
  if (what != "retire") o.to = f.str("--to");
  auto conn = reach_coordinator(c);
  auto& sys = *conn.runtime->system;
  auto answer = std::make_shared<std::promise<caf::expected<actors::placement_table>>>();
  sys.spawn([&conn, o, answer,
             proof = sign_order(c, actors::order_text(o))](caf::event_based_actor* self) {
    self->request(conn.node, std::chrono::seconds(3600), actors::move_atom_v, o, proof)
        .then(
            [=](actors::placement_table& t) {
              answer->set_value(std::move(t));
              self->quit();
            },
            [=](caf::error& e) {
              answer->set_value(std::move(e));
              self->quit();
            });
  });
  auto got = answer->get_future().get();
  if (!got) throw std::runtime_error(what + " refused: " + actors::error_text(sys, got.error()));
  uint64_t version = got->version;
  std::printf("%s done: placement version %llu\n", what.c_str(),
              static_cast<unsigned long long>(version));
  std::fflush(stdout);
  std::_Exit(0);
}

// Moves a node's experts away (each order make-before-break), then stops it.
int cluster_drain(int argc, char** argv) {
  flags f("cluster drain", "--cluster FILE --node NAME",
          {{"--cluster", true, "cluster file (YAML)"}, {"--node", true, "expert node to drain"}},
          argc, argv);
  auto c = actors::load_cluster(f.str("--cluster"));
  auto name = f.str("--node");
  auto conn = reach_coordinator(c);
  auto t = actors::ask<actors::placement_table>(*conn.runtime->system, conn.node, 3600s, "drain",
                                                actors::drain_atom_v, name,
                                                sign_order(c, actors::drain_text(name)));
  std::printf("drained %s: placement version %llu; the node stopped\n", name.c_str(),
              static_cast<unsigned long long>(t.version));
  std::fflush(stdout);
  std::_Exit(0);
}

// The cluster's keys in the folder its file names (or FILE-STEM.keys beside it): a cluster CA
// with a TLS key pair for every node and for operators' commands (control plane), and the data
// key that seals every frame (data plane, transport/seal.hpp). What exists stays (every node must
// share it); nodes new to the file, or named with --node (joining nodes), get their pair.
int cluster_keygen(int argc, char** argv) {
  flags f("cluster keygen", "--cluster FILE [--node NAME] [--where]",
          {{"--cluster", true, "cluster file (YAML)"},
           {"--node", true, "also make a key pair for NAME (a node that joins with --join)"},
           {"--where", false, "only print the keys folder (nothing with security: none)"}},
          argc, argv);
  auto c = actors::load_cluster(f.str("--cluster"));
  if (f.has("--where")) {
    if (c.security.authenticated()) std::printf("%s\n", c.security.keys.c_str());
    return 0;
  }
  if (!c.security.authenticated()) {
    std::printf("keygen: security: none: the cluster has no keys\n");
    return 0;
  }
  const auto dir = c.security.keys;
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace);
  std::vector<std::string> names{"operator"};
  for (const auto& n : c.nodes) {
    if (n.name == "operator")
      throw usage_error("keygen: a node may not be named operator (the command line's key pair)");
    names.push_back(n.name);
  }
  if (auto extra = f.opt("--node")) names.push_back(*extra);
  auto made = transport::write_tls_identities(dir, names);
  const bool data_key = !std::filesystem::exists(dir / "data.key");
  if (data_key) transport::write_data_key(dir / "data.key", transport::make_data_key());
  if (made.empty() && !data_key) {
    std::printf("keygen: keys already in %s (kept)\n", dir.c_str());
    return 0;
  }
  std::string who;
  for (const auto& n : made) who += (who.empty() ? "" : ", ") + n;
  std::printf("keygen: %s%s%s written to %s (copy the folder, without tls-ca.key, to every host)\n",
              made.empty() ? "" : ("TLS key pairs for " + who).c_str(),
              made.empty() || !data_key ? "" : " and ", data_key ? "the data key" : "",
              dir.c_str());
  return 0;
}

// The model files one expert node needs: only the experts the file's placement gives it.
int cluster_shard(int argc, char** argv) {
  flags f("cluster shard", "--cluster FILE --node NAME --out DIR",
          {{"--cluster", true, "cluster file (YAML)"},
           {"--node", true, "an expert node of the file"},
           {"--out", true, "directory to write the node's partial copy of the model to"}},
          argc, argv);
  auto c = actors::load_cluster(f.str("--cluster"));
  const auto& node = c.node(f.str("--node"));
  if (node.roles != std::vector{actors::role::experts})
    throw usage_error("shard: node '" + node.name +
                      "' has roles besides experts: it needs the "
                      "whole model");
  auto m = model::load_model(c.model);
  int64_t expert_bytes = 0;
  for (const auto& l : m.weights.layers)
    if (l.moe && expert_bytes == 0) expert_bytes = l.experts.front().bytes();
  auto table = actors::make_placement(c, m.config, expert_bytes, 1);
  model::expert_set experts;
  for (int64_t slot : actors::hosted_experts(table, node.name))
    experts[slot / table.num_experts].push_back(slot % table.num_experts);
  int64_t bytes = model::write_expert_shard(c.model, f.str("--out"), experts);
  std::printf("shard: %lld experts of %s (%.1f of %.1f MB) written to %s\n",
              static_cast<long long>(actors::hosted_experts(table, node.name).size()),
              node.name.c_str(), bytes / 1e6, m.weights.total_bytes() / 1e6,
              f.str("--out").c_str());
  return 0;
}

}  // namespace

int cluster_main(int argc, char** argv) {
  static const char* known[] = {"nodes",   "status",    "placement", "rebalance",
                                "migrate", "replicate", "retire",    "drain",
                                "links",   "keygen",    "shard"};
  if (argc < 1 || std::none_of(std::begin(known), std::end(known),
                               [&](const char* k) { return std::strcmp(argv[0], k) == 0; }))
    throw usage_error(usage);
  std::string what = argv[0];
  if (what == "migrate" || what == "replicate" || what == "retire")
    return cluster_move(what, argc - 1, argv + 1);
  if (what == "drain") return cluster_drain(argc - 1, argv + 1);
  if (what == "keygen") return cluster_keygen(argc - 1, argv + 1);
  if (what == "shard") return cluster_shard(argc - 1, argv + 1);
  flags f("cluster " + what, "--cluster FILE [--json]",
          {{"--cluster", true, "cluster file (YAML)"}, {"--json", false, "print JSON"}}, argc - 1,
          argv + 1);
  auto c = actors::load_cluster(f.str("--cluster"));
  if (what == "nodes") return cluster_nodes(c);
  if (what == "links") return cluster_links(c);
  if (what == "status") return cluster_status(c, f.has("--json"));
  if (what == "placement") return cluster_placement(c, f.has("--json"));
  return cluster_rebalance(c, f.has("--json"));
}

}  // namespace xmesh::tools
