#include "actors/cluster_config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "actors/config_fields.hpp"
#include "actors/replica_policy.hpp"

namespace xmesh::actors {

namespace {

role parse_role(const std::string& origin, const std::string& field, const std::string& r) {
  if (r == "coordinator") return role::coordinator;
  if (r == "head") return role::head;
  if (r == "experts") return role::experts;
  fail(origin, field, "unknown role '" + r + "' (roles: coordinator, head, experts)");
}

node_config parse_node(YAML::Node n, size_t index, const std::string& origin,
                       const std::filesystem::path& base) {
  std::string at = "nodes[" + std::to_string(index) + "]";
  if (!n.IsMap()) fail(origin, at, "expected a mapping");
  node_config c;
  if (!n["name"]) fail(origin, at + ".name", "missing");
  c.name = scalar<std::string>(n["name"], origin, at + ".name");
  at = "node '" + c.name + "'";
  check_keys(
      n,
      {"name", "host", "control_port", "data_port", "roles", "memory_budget", "device", "threads",
       "compute_nice", "pin_compute", "expert_source", "metrics_port", "link", "model", "store"},
      origin, at);
  if (n["host"]) c.host = scalar<std::string>(n["host"], origin, at + ".host");
  c.control_port = port(n["control_port"], origin, at + ".control_port");
  c.data_port = port(n["data_port"], origin, at + ".data_port");
  YAML::Node roles = n["roles"];
  if (!roles || !roles.IsSequence() || roles.size() == 0)
    fail(origin, at + ".roles", "missing or empty (roles: coordinator, head, experts)");
  for (YAML::Node r : roles)
    c.roles.push_back(
        parse_role(origin, at + ".roles", scalar<std::string>(r, origin, at + ".roles")));
  if (n["memory_budget"])
    c.memory_budget_bytes =
        parse_bytes(origin, at + ".memory_budget",
                    scalar<std::string>(n["memory_budget"], origin, at + ".memory_budget"));
  if (n["device"]) c.device = scalar<std::string>(n["device"], origin, at + ".device");
  if (c.device != "cpu" && c.device != "gpu" && c.device != "edge")
    fail(origin, at + ".device", "unknown device class '" + c.device + "' (cpu, gpu, edge)");
  if (n["threads"]) c.threads = scalar<int>(n["threads"], origin, at + ".threads");
  if (n["expert_source"])
    c.expert_source = scalar<std::string>(n["expert_source"], origin, at + ".expert_source");
  if (c.expert_source != "files" && c.expert_source != "peer")
    fail(origin, at + ".expert_source", "unknown source '" + c.expert_source + "' (files, peer)");
  if (c.threads < 1 || c.threads > 256) fail(origin, at + ".threads", "must be in [1, 256]");
  if (n["compute_nice"])
    c.compute_nice = scalar<int>(n["compute_nice"], origin, at + ".compute_nice");
  if (c.compute_nice < 0 || c.compute_nice > 19)
    fail(origin, at + ".compute_nice",
         "must be in [0, 19] (how far expert computation yields to frame handling)");
  if (n["pin_compute"]) {
    const auto v = scalar<std::string>(n["pin_compute"], origin, at + ".pin_compute");
    if (v != "true" && v != "false")
      fail(origin, at + ".pin_compute", "expected true or false, got '" + v + "'");
    c.pin_compute = v == "true";
  }
  if (n["metrics_port"]) {
    auto v = scalar<int64_t>(n["metrics_port"], origin, at + ".metrics_port");
    if (v < 0 || v > 65535)
      fail(origin, at + ".metrics_port", "port out of range: " + std::to_string(v));
    c.metrics_port = static_cast<int32_t>(v);
  }
  if (n["link"]) c.link = scalar<std::string>(n["link"], origin, at + ".link");
  if (n["model"]) {
    c.model = scalar<std::string>(n["model"], origin, at + ".model");
    if (c.model.is_relative()) c.model = base / c.model;
    // Heads and the coordinator size, checksum and compute with the cluster's model.
    if (c.roles != std::vector{role::experts})
      fail(origin, at + ".model", "only a node with just the experts role reads its own copy");
  }
  if (n["store"]) {  // checked against the model when the node starts
    c.store = scalar<std::string>(n["store"], origin, at + ".store");
    // A relative fallback= names a directory beside the cluster file, as `model` does.
    if (auto f = c.store.find("fallback="); f != std::string::npos) {
      const size_t from = f + 9, to = std::min(c.store.find(',', from), c.store.size());
      std::filesystem::path dir = c.store.substr(from, to - from);
      if (dir.is_relative() && !dir.empty())
        c.store.replace(from, to - from, (base / dir).string());
    }
    if (c.roles != std::vector{role::experts})
      fail(origin, at + ".store", "only a node with just the experts role keeps a store");
  }
  return c;
}

void parse_rebalance(YAML::Node r, const std::string& origin, rebalance_config& c) {
  if (!r.IsMap()) fail(origin, "rebalance", "expected a mapping");
  auto text = [&](const char* key) {
    return scalar<std::string>(r[key], origin, std::string("rebalance.") + key);
  };
  auto fraction = [&](const char* key, double& out) {
    if (!r[key]) return;
    out = scalar<double>(r[key], origin, std::string("rebalance.") + key);
    if (!(out >= 0 && out < 1)) fail(origin, std::string("rebalance.") + key, "must be in [0, 1)");
  };
  for (auto it = r.begin(); it != r.end(); ++it) {
    auto key = it->first.as<std::string>();
    static const char* known[] = {"period",     "window",    "min_gain",
                                  "hysteresis", "bandwidth", "replicas"};
    if (std::find(std::begin(known), std::end(known), key) == std::end(known))
      fail(origin, "rebalance." + key,
           "unknown setting (period, window, min_gain, hysteresis, bandwidth, replicas)");
  }
  if (r["period"]) c.period_s = parse_seconds(origin, "rebalance.period", text("period"));
  if (r["window"]) c.window_s = parse_seconds(origin, "rebalance.window", text("window"));
  if (c.window_s < 1) fail(origin, "rebalance.window", "must be at least 1s");
  fraction("min_gain", c.min_gain);
  fraction("hysteresis", c.hysteresis);
  if (r["bandwidth"])
    c.bandwidth_bytes_s = parse_bytes(origin, "rebalance.bandwidth", text("bandwidth"));
  if (r["replicas"]) {
    c.replicas_per_layer = scalar<int64_t>(r["replicas"], origin, "rebalance.replicas");
    if (c.replicas_per_layer < 1) fail(origin, "rebalance.replicas", "must be >= 1");
  }
}

void parse_heartbeat(YAML::Node h, const std::string& origin, heartbeat_config& c) {
  if (!h.IsMap()) fail(origin, "heartbeat", "expected a mapping (period, timeout, rejoin)");
  for (auto it = h.begin(); it != h.end(); ++it) {
    auto key = it->first.as<std::string>();
    if (key != "period" && key != "timeout" && key != "rejoin")
      fail(origin, "heartbeat." + key, "unknown setting (period, timeout, rejoin)");
  }
  auto text = [&](const char* key) {
    return scalar<std::string>(h[key], origin, std::string("heartbeat.") + key);
  };
  if (h["period"]) c.period_s = parse_seconds(origin, "heartbeat.period", text("period"));
  if (h["timeout"]) c.timeout_s = parse_seconds(origin, "heartbeat.timeout", text("timeout"));
  if (h["rejoin"]) c.rejoin_s = parse_seconds(origin, "heartbeat.rejoin", text("rejoin"));
  if (c.period_s < 0.01) fail(origin, "heartbeat.period", "must be at least 10ms");
  if (c.timeout_s < 2 * c.period_s)
    fail(origin, "heartbeat.timeout", "must be at least two periods");
}

void parse_static_placement(YAML::Node p, const std::string& origin, cluster_config& c) {
  if (!p.IsMap()) fail(origin, "static_placement", "expected a mapping node -> list of experts");
  for (auto it = p.begin(); it != p.end(); ++it) {
    auto name = scalar<std::string>(it->first, origin, "static_placement");
    std::vector<int64_t> experts;
    YAML::Node list = it->second;
    if (!list.IsSequence())
      fail(origin, "static_placement." + name, "expected a list of expert ids");
    for (YAML::Node e : list)
      experts.push_back(scalar<int64_t>(e, origin, "static_placement." + name));
    c.static_experts[name] = experts;
  }
}

void validate(const cluster_config& c, const std::string& origin) {
  if (c.nodes.empty()) fail(origin, "nodes", "missing or empty");
  std::set<std::string> names;
  std::set<std::pair<std::string, uint16_t>> ports;
  for (const auto& n : c.nodes) {
    if (!names.insert(n.name).second) fail(origin, "node '" + n.name + "'", "name used twice");
    std::vector<uint16_t> used{n.control_port, n.data_port};
    if (n.metrics_port > 0) used.push_back(static_cast<uint16_t>(n.metrics_port));
    for (auto p : used)
      if (!ports.insert({n.host, p}).second)
        fail(origin, "node '" + n.name + "'",
             "port " + std::to_string(p) + " on " + n.host + " used twice");
  }
  auto count = [&](role r) { return c.with_role(r).size(); };
  if (count(role::coordinator) != 1)
    fail(origin, "nodes", "exactly one node must have the coordinator role");
  if (count(role::head) < 1) fail(origin, "nodes", "at least one node must have the head role");
  if (count(role::experts) < 1)
    fail(origin, "nodes", "at least one node must have the experts role");
  for (const auto& [name, experts] : c.static_experts) {
    if (!names.count(name)) fail(origin, "static_placement", "unknown node '" + name + "'");
    if (!c.node(name).has(role::experts))
      fail(origin, "static_placement", "node '" + name + "' has no experts role");
  }
  // Prefetching stores: the head admits its predictions to its sequences' logical caches, so
  // every store prefetches or none does (else a store's misses would not be the head's).
  auto prefetches = [](const node_config& n) {
    return n.store.find("prefetch=1") != std::string::npos;
  };
  if (auto p = std::find_if(c.nodes.begin(), c.nodes.end(), prefetches); p != c.nodes.end())
    for (const auto& n : c.nodes)
      if (!n.store.empty() && !prefetches(n))
        fail(origin, "node '" + n.name + "'.store",
             "with prefetch=1 on node '" + p->name +
                 "', every store prefetches (the head's logical cache is one for all stores)");
  // A store's low-precision fallback: the head marks which pairs compute with it, so a pair's
  // precision must not depend on the replica (or the head) that computes it.
  auto with_fallback = [](const node_config& n) {
    return n.store.find("fallback=") != std::string::npos;
  };
  auto first = std::find_if(c.nodes.begin(), c.nodes.end(), with_fallback);
  if (first == c.nodes.end()) return;
  const std::string why = "with a low-precision fallback on node '" + first->name + "'";
  for (const auto& n : c.nodes)
    if (n.has(role::experts) && !with_fallback(n))
      fail(origin, "node '" + n.name + "'" + (n.has(role::head) ? ".roles" : ".store"),
           why +
               ", every node that hosts experts keeps one (store: ...,fallback=DIR), so a "
               "row's precision does not depend on its replica" +
               (n.has(role::head) ? "; a head keeps no store: drop its experts role" : ""));
  if (c.store_misses_on_head)
    fail(origin, "store_misses",
         "head: " + why + " the misses compute on the node; choose one (store_misses: node)");
}

}  // namespace

bool node_config::has(role r) const {
  return std::find(roles.begin(), roles.end(), r) != roles.end();
}

std::string node_config::data_address(const std::string& transport) const {
  if (transport == "local") return "local://" + name;
  if (transport == "ucx") return "ucx://" + host + ":" + std::to_string(data_port);
  return "tcp://" + host + ":" + std::to_string(data_port);
}

const node_config& cluster_config::node(const std::string& name) const {
  for (const auto& n : nodes)
    if (n.name == name) return n;
  throw std::runtime_error("no node named '" + name + "' in the cluster file");
}

const node_config& cluster_config::coordinator() const {
  return *with_role(role::coordinator).front();
}

std::vector<const node_config*> cluster_config::with_role(role r) const {
  std::vector<const node_config*> out;
  for (const auto& n : nodes)
    if (n.has(r)) out.push_back(&n);
  return out;
}

cluster_config parse_cluster(const std::string& yaml, const std::string& origin,
                             const std::filesystem::path& base) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(origin + ": not valid YAML: " + e.msg + " (line " +
                             std::to_string(e.mark.line + 1) + ")");
  }
  if (!root.IsMap()) fail(origin, "top level", "expected a mapping");
  check_keys(root,
             {"model", "transport", "placement", "static_placement", "rebalance", "heartbeat",
              "metrics", "links", "security", "data_connections", "ssh", "nodes", "routing",
              "replica_choice", "store_misses"},
             origin, "");
  cluster_config c;
  if (!root["model"]) fail(origin, "model", "missing");
  c.model = scalar<std::string>(root["model"], origin, "model");
  if (c.model.is_relative()) c.model = base / c.model;
  if (root["transport"]) c.transport = scalar<std::string>(root["transport"], origin, "transport");
  if (c.transport != "local" && c.transport != "zmq" && c.transport != "ucx")
    fail(origin, "transport", "unknown transport '" + c.transport + "' (local, zmq, ucx)");
  if (root["placement"]) c.placement = scalar<std::string>(root["placement"], origin, "placement");
  if (c.placement != "spread" && c.placement != "static")
    fail(origin, "placement", "unknown placement '" + c.placement + "' (spread, static)");
  if (c.placement == "static") {
    if (!root["static_placement"])
      fail(origin, "static_placement", "required when placement is static");
    parse_static_placement(root["static_placement"], origin, c);
  }
  if (root["rebalance"]) parse_rebalance(root["rebalance"], origin, c.rebalance);
  if (root["heartbeat"]) parse_heartbeat(root["heartbeat"], origin, c.heartbeat);
  if (auto r = root["replica_choice"]) {
    c.replica_choice = scalar<std::string>(r, origin, "replica_choice");
    try {
      (void)make_replica_policy(c.replica_choice);
    } catch (const std::exception& e) {
      fail(origin, "replica_choice", std::string(e.what()).substr(sizeof "replica_choice: " - 1));
    }
  }
  if (auto r = root["store_misses"]) {
    const auto where = scalar<std::string>(r, origin, "store_misses");
    if (where != "node" && where != "head")
      fail(origin, "store_misses", "expected node or head, not '" + where + "'");
    c.store_misses_on_head = where == "head";
  }
  if (auto r = root["routing"]) {  // a mapping of the policy's knobs, in the spec's words
    if (!r.IsMap()) fail(origin, "routing", "expected a mapping (cache_aware, skip_below, ...)");
    for (auto it = r.begin(); it != r.end(); ++it)
      c.routing +=
          (c.routing.empty() ? "" : ",") + it->first.as<std::string>() + "=" +
          scalar<std::string>(it->second, origin, "routing." + it->first.as<std::string>());
  }
  if (auto m = root["metrics"]) {
    if (!m.IsMap()) fail(origin, "metrics", "expected a mapping (expert_series)");
    for (auto it = m.begin(); it != m.end(); ++it)
      if (it->first.as<std::string>() != "expert_series")
        fail(origin, "metrics." + it->first.as<std::string>(), "unknown setting (expert_series)");
    if (m["expert_series"]) {
      c.metrics.expert_series =
          scalar<int64_t>(m["expert_series"], origin, "metrics.expert_series");
      if (c.metrics.expert_series < 0) fail(origin, "metrics.expert_series", "must be >= 0");
    }
  }
  c.security.keys = base / (std::filesystem::path(origin).stem().string() + ".keys");
  if (auto sec = root["security"]) {
    if (sec.IsScalar()) {
      if (sec.as<std::string>() != "none")
        fail(origin, "security", "expected none or a mapping (keys)");
      c.security.explicit_none = true;
      c.security.keys.clear();
    } else {
      if (!sec.IsMap()) fail(origin, "security", "expected none or a mapping (keys)");
      check_keys(sec, {"keys"}, origin, "security");
      if (!sec["keys"]) fail(origin, "security.keys", "missing");
      c.security.keys = scalar<std::string>(sec["keys"], origin, "security.keys");
      if (c.security.keys.is_relative()) c.security.keys = base / c.security.keys;
    }
  }
  if (auto d = root["data_connections"]) {
    if (!d.IsMap()) fail(origin, "data_connections", "expected a mapping (per_host, total)");
    check_keys(d, {"per_host", "total"}, origin, "data_connections");
    auto& caps = c.data_connections;
    for (auto [key, value] : {std::pair{"per_host", &caps.per_host}, {"total", &caps.total}}) {
      const std::string where = std::string("data_connections.") + key;
      if (d[key]) *value = scalar<int64_t>(d[key], origin, where);
      if (*value < 1 || *value > 1'000'000) fail(origin, where, "must be in 1..1000000");
    }
    if (caps.per_host > caps.total)
      fail(origin, "data_connections.per_host", "must not exceed data_connections.total");
  }
  // deploy/ssh.sh reads `ssh:` (user, port, identity, dir); here only its shape is checked.
  if (auto ssh = root["ssh"]) {
    if (!ssh.IsMap()) fail(origin, "ssh", "expected a mapping (user, port, identity, dir)");
    check_keys(ssh, {"user", "port", "identity", "dir"}, origin, "ssh");
  }
  c.links = builtin_link_profiles();
  if (root["links"]) parse_links(root["links"], origin, c.links);
  if (!root["nodes"] || !root["nodes"].IsSequence()) fail(origin, "nodes", "missing or not a list");
  size_t i = 0;
  YAML::Node nodes = root["nodes"];
  for (YAML::Node n : nodes) c.nodes.push_back(parse_node(n, i++, origin, base));
  for (const auto& n : c.nodes)
    if (!n.link.empty() && !c.links.count(n.link)) {
      std::string known;
      for (const auto& [name, p] : c.links) known += (known.empty() ? "" : ", ") + name;
      fail(origin, "node '" + n.name + "'.link",
           "unknown profile '" + n.link + "' (" + known + ")");
    }
  validate(c, origin);
  return c;
}

cluster_config load_cluster(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  auto c = parse_cluster(text.str(), path.string(), std::filesystem::absolute(path).parent_path());
  if (!std::filesystem::is_regular_file(c.model / "config.json"))
    throw std::runtime_error(path.string() + ": model: " + c.model.string() +
                             " is not a model directory (no config.json)");
  for (const auto& n : c.nodes)
    if (!n.model.empty() && !std::filesystem::is_regular_file(n.model / "config.json"))
      throw std::runtime_error(path.string() + ": node '" + n.name + "'.model: " +
                               n.model.string() + " is not a model directory (no config.json)");
  return c;
}

const std::filesystem::path& node_config::model_dir(const cluster_config& c) const {
  return model.empty() ? c.model : model;
}

cluster_config joining_cluster(const join_request& j) {
  const std::string origin = "xmesh node --join";
  auto colon = j.coordinator.rfind(':');
  if (colon == std::string::npos || colon == 0)
    fail(origin, "--join", "expected HOST:PORT of the coordinator, got '" + j.coordinator + "'");
  auto number = [&](const std::string& flag, const std::string& text, int64_t low, int64_t high) {
    try {
      size_t used = 0;
      int64_t v = std::stoll(text, &used);
      if (used == text.size() && v >= low && v <= high) return v;
    } catch (const std::exception&) {
    }
    fail(origin, flag,
         "expected " + std::to_string(low) + ".." + std::to_string(high) + ", got '" + text + "'");
  };
  if (j.transport != "zmq" && j.transport != "ucx")
    fail(origin, "--transport", "expected zmq or ucx, got '" + j.transport + "'");
  if (j.name.empty()) fail(origin, "--name", "missing");
  if (j.security.empty())
    fail(origin, "--security", "missing: the cluster's keys folder, or none for a trusted lab");
  cluster_config c;
  c.security.explicit_none = j.security == "none";
  if (!c.security.explicit_none) c.security.keys = j.security;
  c.model = j.model;
  c.transport = j.transport;
  node_config coordinator;
  coordinator.name = "coordinator at " + j.coordinator;
  coordinator.host = j.coordinator.substr(0, colon);
  coordinator.control_port =
      static_cast<uint16_t>(number("--join", j.coordinator.substr(colon + 1), 1, 65535));
  coordinator.roles = {role::coordinator};
  coordinator.name_unknown = true;
  node_config self;
  self.name = j.name;
  self.host = j.host;
  self.data_port =
      static_cast<uint16_t>(number("--data-port", std::to_string(j.data_port), 1, 65535));
  self.roles = {role::experts};
  self.threads = static_cast<int>(number("--threads", std::to_string(j.threads), 1, 256));
  if (!j.memory_budget.empty())
    self.memory_budget_bytes = parse_bytes(origin, "--memory-budget", j.memory_budget);
  c.nodes = {coordinator, self};
  return c;
}

cluster_config embedded_cluster(const std::filesystem::path& model, int threads) {
  cluster_config c;
  c.model = model;
  c.transport = "local";
  c.security.explicit_none = true;  // one process: no port
  node_config n;
  n.name = "embedded";
  n.roles = {role::coordinator, role::head, role::experts};
  n.threads = threads;
  c.nodes.push_back(n);
  return c;
}

}  // namespace xmesh::actors
