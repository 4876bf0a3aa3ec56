// The cluster file (YAML): nodes, their addresses, roles, transport, budgets and placement.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "actors/link_profiles.hpp"

namespace xmesh::actors {

/// What a node process does; a node may take several roles.
enum class role { coordinator, head, experts };

struct cluster_config;

/// One node of the cluster file.
struct node_config {
  std::string name;
  std::string host = "127.0.0.1";
  uint16_t control_port = 0;  // CAF middleman (control plane)
  uint16_t data_port = 0;     // transport listener (data plane)
  std::vector<role> roles;
  int64_t memory_budget_bytes = 0;  // 0: unlimited
  std::string device = "cpu";       // device class: cpu, gpu, edge
  int threads = 1;                  // compute threads of this node
  /// How far below the default priority its expert-computing threads run, so that its receive
  /// threads never wait behind them for a core (kernels::enter_compute_thread); 0: not lowered.
  int compute_nice = 10;
  /// Its expert-computing threads each bound to one CPU, in turn (kernels::compute_role::pin).
  bool pin_compute = true;
  /// Where replicas added at run time get their weights: "files" (the node's own model files)
  /// or "peer" (streamed from a node that serves the expert: edge devices without a copy).
  std::string expert_source = "files";
  /// Where the node serves Prometheus `/metrics` (on `host`); 0 picks a free port (logged);
  /// -1 (absent): no metrics.
  int32_t metrics_port = -1;
  /// The link profile its host sits behind (deploy/netns.sh); empty: none.
  std::string link;
  /// An expert store (actors/node_store.hpp): "cache_fraction=0.25,cache=lru,rate=100MB", the
  /// experts it serves kept resident per layer, the rest read from its files at that rate when a
  /// batch needs them; empty: every expert it serves is resident.
  std::string store;
  /// The coordinator a node joins with `--join HOST:PORT`: its name is not known, so any
  /// certificate of the cluster's CA is accepted from it.
  bool name_unknown = false;
  /// This node's own copy of the model, e.g. its q8 or q4 form (`xmesh quantize`) on an edge
  /// device; empty: the cluster's `model`. It must be the same model up to quantization.
  std::filesystem::path model;

  /// The model directory this node reads.
  [[nodiscard]] const std::filesystem::path& model_dir(const cluster_config& c) const;

  [[nodiscard]] bool has(role r) const;
  /// The transport address peers use to reach this node's experts.
  [[nodiscard]] std::string data_address(const std::string& transport) const;
};

/// The coordinator's load-aware rebalancing (cluster file section `rebalance:`).
struct rebalance_config {
  double period_s = 0;             // automatic loop period; 0: only on request
  double window_s = 10;            // heads count routed tokens over this sliding window
  double min_gain = 0.02;          // apply a plan only if balancedness improves this much
  double hysteresis = 0.01;        // a moved replica must cut its layer's peak time this much
  int64_t bandwidth_bytes_s = 0;   // migration copy rate cap; 0: unlimited
  int64_t replicas_per_layer = 0;  // expert slots per layer; 0: experts + expert nodes
};

/// Liveness (cluster file section `heartbeat:`): every node beats each period; the coordinator
/// declares a node dead after `timeout` without a beat. A node declared dead that beats again
/// serves again only after `rejoin` of steady beats, so a flapping node cannot make the
/// placement thrash.
struct heartbeat_config {
  double period_s = 0.25;
  double timeout_s = 1.0;
  double rejoin_s = 5.0;
};

/// Metrics (cluster file section `metrics:`).
struct metrics_config {
  /// Above this many (layer, expert) pairs, per-expert series are summed per layer.
  int64_t expert_series = 4096;
};

/// Caps on the data-plane connections a node accepts (cluster file section `data_connections:`;
/// transport/gate/library_accepts.hpp): live connections from one host address, and in all. A
/// stranger holding connections cannot take more than its host's share.
struct data_connections_config {
  int64_t per_host = 64;
  int64_t total = 512;
};

/// Who may talk to the cluster's nodes (cluster file section `security:`). By default a cluster
/// is authenticated with the keys in `keys` (`security: {keys: DIR}`, or `FILE-STEM.keys` beside
/// the cluster file), which `xmesh cluster keygen` writes: the control plane speaks mutual TLS
/// with certificates of the cluster's CA, and every data-plane frame (zmq or ucx) is sealed with
/// the cluster's data key (AES-256-GCM, transport/seal.hpp). `security: none` keeps a
/// trusted lab's plain connections (nodes warn at start-up).
struct security_config {
  bool explicit_none = false;
  std::filesystem::path keys;  // empty only with `none`

  [[nodiscard]] bool authenticated() const { return !explicit_none; }
};

/// The whole cluster file, validated.
struct cluster_config {
  std::filesystem::path model;       // model directory every node reads
  std::string transport = "zmq";     // local, zmq or ucx
  std::string placement = "spread";  // spread (by memory budget) or static
  std::map<std::string, std::vector<int64_t>> static_experts;  // node -> experts (every layer)
  std::vector<node_config> nodes;
  rebalance_config rebalance;
  heartbeat_config heartbeat;
  metrics_config metrics;
  security_config security;
  data_connections_config data_connections;
  std::map<std::string, link_profile> links;  // built-in profiles and the file's own
  /// The heads' routing policy (section `routing:`, model/routing_policy.hpp) as its spec text
  /// "key=value,..."; empty: exact routing. Checked against the model when a head starts.
  std::string routing;
  /// How heads pick among an expert's replicas (`replica_choice:`, actors/replica_policy.hpp):
  /// least_outstanding (default) or latency.
  std::string replica_choice = "least_outstanding";
  /// Where a row that would miss in an expert node's store (node key store:) computes
  /// (`store_misses:`): `node` (default: the node reads the expert from its slow tier) or `head`
  /// (once the node's layer is full, the head computes it from its own files and the node keeps
  /// the experts that filled it; actors/router.hpp).
  bool store_misses_on_head = false;

  [[nodiscard]] const node_config& node(const std::string& name) const;  // throws naming it
  [[nodiscard]] const node_config& coordinator() const;
  [[nodiscard]] std::vector<const node_config*> with_role(role r) const;
};

/// Reads and validates a cluster file; throws std::runtime_error naming the file and field.
cluster_config load_cluster(const std::filesystem::path& path);
/// Parses cluster YAML text (`origin` names it in errors; relative model paths resolve against
/// `base`).
cluster_config parse_cluster(const std::string& yaml, const std::string& origin,
                             const std::filesystem::path& base);

/// What `xmesh node --join` knows: the running cluster's coordinator and the joining node.
struct join_request {
  std::filesystem::path model;
  std::string transport = "zmq";
  std::string coordinator;  // HOST:PORT of its control plane
  std::string name, host = "127.0.0.1";
  int64_t data_port = 0;
  std::string memory_budget;  // e.g. "2GiB"; empty: unlimited
  int64_t threads = 1;
  std::string security;  // the cluster's keys folder, or "none"
};

/// The cluster a joining expert node runs with: the coordinator's entry and its own (the
/// coordinator adds it to the live placement when it registers). Throws naming the flag at fault.
cluster_config joining_cluster(const join_request& join);

/// The embedded default: one node with every role, in-process transport.
cluster_config embedded_cluster(const std::filesystem::path& model, int threads);

}  // namespace xmesh::actors
