// xmesh prometheus-config: a Prometheus configuration that scrapes every node of a cluster file
// that exports metrics, and loads the given rule files.
#include <cstdio>
#include <filesystem>

#include "actors/cluster_config.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

int prometheus_config_main(int argc, char** argv) {
  flags f("prometheus-config", "--cluster FILE [--rules FILE] [--interval SECONDS]",
          {{"--cluster", true, "cluster file (YAML)"},
           {"--rules", true, "rule file to load (e.g. dashboards/rules/xmesh.rules.yml)"},
           {"--interval", true, "scrape and rule evaluation interval in seconds (default 5)"}},
          argc, argv);
  auto path = std::filesystem::absolute(f.str("--cluster"));
  auto cluster = actors::load_cluster(path);
  const double interval = f.real("--interval", 5.0);
  if (interval <= 0 || interval > 3600) throw usage_error("--interval: must be in (0, 3600]");
  std::printf("# Prometheus configuration for %s (xmesh prometheus-config)\n", path.c_str());
  std::printf("global:\n  scrape_interval: %gs\n  evaluation_interval: %gs\n", interval, interval);
  if (auto rules = f.opt("--rules")) {
    auto r = std::filesystem::absolute(*rules);
    if (!std::filesystem::exists(r)) throw usage_error("--rules: " + r.string() + ": not found");
    std::printf("rule_files:\n  - '%s'\n", r.c_str());
  }
  std::printf("scrape_configs:\n  - job_name: xmesh\n    static_configs:\n");
  int listed = 0;
  for (const auto& n : cluster.nodes) {
    if (n.metrics_port < 0) {
      std::printf("      # %s: no metrics_port in the cluster file\n", n.name.c_str());
    } else if (n.metrics_port == 0) {
      std::printf("      # %s: metrics_port 0 (picked at start-up, see its log)\n", n.name.c_str());
    } else {
      std::printf("      - targets: ['%s:%d']\n        labels: {instance_node: '%s'}\n",
                  n.host.c_str(), n.metrics_port, n.name.c_str());
      ++listed;
    }
  }
  if (listed == 0) std::printf("      - targets: []\n");
  return 0;
}

}  // namespace xmesh::tools
