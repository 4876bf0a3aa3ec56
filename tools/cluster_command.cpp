// xmesh cluster: inspects a cluster file and the running cluster (used by deploy/local.sh).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "actors/system.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

namespace {

int cluster_nodes(const actors::cluster_config& c) {
  for (const auto& n : c.nodes) std::printf("%s\n", n.name.c_str());
  return 0;
}

// Exit 0 when every node of the file has registered with the coordinator.
int cluster_status(const actors::cluster_config& c, bool json) {
  actors::actor_runtime rt(1);
  auto coordinator =
      actors::reach_node(*rt.system, c.coordinator(), std::chrono::milliseconds(2000));
  auto s =
      actors::ask<actors::cluster_status>(*rt.system, coordinator, std::chrono::seconds(5),
                                          "status from the coordinator", actors::status_atom_v);
  nlohmann::json j = {{"registered", s.registered},
                      {"missing", s.missing},
                      {"silent", s.silent},
                      {"placement_version", s.placement_version}};
  nlohmann::json nodes = nlohmann::json::object();
  for (const auto& name : s.registered) {
    if (std::find(s.silent.begin(), s.silent.end(), name) != s.silent.end()) continue;
    auto a = actors::reach_node(*rt.system, c.node(name), std::chrono::milliseconds(2000));
    auto st = actors::ask<actors::node_stats>(*rt.system, a, std::chrono::seconds(5),
                                              "stats of " + name, actors::stats_atom_v);
    nodes[name] = {{"frames_served", st.frames_served}, {"frames_dropped", st.frames_dropped}};
  }
  j["nodes"] = nodes;
  if (json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("registered: %zu of %zu nodes\n", s.registered.size(), c.nodes.size());
    for (const auto& m : s.missing) std::printf("missing: %s\n", m.c_str());
    for (const auto& m : s.silent) std::printf("silent (no heartbeat for 3 s): %s\n", m.c_str());
  }
  std::fflush(stdout);
  std::_Exit(s.missing.empty() && s.silent.empty() ? 0 : 3);
}

}  // namespace

int cluster_main(int argc, char** argv) {
  if (argc < 1 || (std::strcmp(argv[0], "nodes") != 0 && std::strcmp(argv[0], "status") != 0))
    throw usage_error("expected: xmesh cluster nodes|status --cluster FILE [--json]");
  std::string what = argv[0];
  flags f("cluster " + what, "--cluster FILE [--json]",
          {{"--cluster", true, "cluster file (YAML)"}, {"--json", false, "print JSON"}}, argc - 1,
          argv + 1);
  auto c = actors::load_cluster(f.str("--cluster"));
  return what == "nodes" ? cluster_nodes(c) : cluster_status(c, f.has("--json"));
}

}  // namespace xmesh::tools
