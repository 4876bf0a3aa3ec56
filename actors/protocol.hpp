// Every control-plane message between ExpertMesh actors, and the project's only CAF type-ID
// block. The control plane never carries activations: those move as transport frames.
#pragma once

#include <caf/all.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "actors/placement_table.hpp"

namespace xmesh::actors {

/// A node announcing itself to the coordinator, with the actor it answers control messages on
/// (placement pushes, expert loads and retirements, load reports), and what it holds: a
/// coordinator (also a restarted one) builds the live placement from these reports.
struct node_info {
  std::string name;
  std::vector<std::string> roles;
  std::string data_address;
  caf::actor node;
  std::string model;              // model::model_identity of the node's model files
  std::vector<int64_t> resident;  // replicas it holds and serves: layer * experts + expert
  uint64_t version = 0;           // the newest placement version it has seen (0: none)
  int64_t memory_budget_bytes = 0;
  // In an authenticated cluster: the node's certificate and its key's signature over
  // registration_text(), so a member registers only under the name its certificate gives it.
  std::string certificate;
  std::string signature;
  // XXH3 of every expert of its store's low-precision copy (0: none): all must be the same.
  uint64_t fallback = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.name, x.roles, x.data_address, x.node, x.model,
           x.resident, x.version, x.memory_budget_bytes, x.certificate, x.signature, x.fallback);
}

/// What a registering node signs: who it says it is, where it serves, and what.
inline std::string registration_text(const node_info& i) {
  return "xmesh-register\n" + i.name + "\n" + i.data_address + "\n" + i.model;
}

/// An operator's or the planner's order to change one (layer, expert)'s replicas.
struct move_order {
  enum kind_t : uint8_t { replicate = 1, retire = 2, migrate = 3 };
  uint8_t kind = replicate;
  int64_t layer = 0;
  int64_t expert = 0;
  std::string from;  // retire, migrate: the node losing its replica
  std::string to;    // replicate, migrate: the node gaining one
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, move_order& x) {
  return f(caf::meta::type_name("move_order"), x.kind, x.layer, x.expert, x.from, x.to);
}

/// An operator's order, signed (authenticated clusters): the operator's certificate and its key's
/// signature over the order's text (order_text). Only the command line holds the operator's key,
/// so a member that is not an operator cannot move, drain or rebalance; empty with security: none.
struct operator_proof {
  std::string certificate;
  std::string signature;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, operator_proof& x) {
  return f(caf::meta::type_name("operator_proof"), x.certificate, x.signature);
}

/// What an operator signs for each kind of order.
inline std::string order_text(const move_order& o) {
  return "xmesh-order\nmove\n" + std::to_string(o.kind) + "\n" + std::to_string(o.layer) + "\n" +
         std::to_string(o.expert) + "\n" + o.from + "\n" + o.to;
}
inline std::string drain_text(const std::string& node) { return "xmesh-order\ndrain\n" + node; }
inline std::string rebalance_text() { return "xmesh-order\nrebalance"; }

/// What a head measured since the coordinator last asked: routed tokens per (layer, expert)
/// over its sliding window, and the dispatch round trip per node of the table.
struct head_load {
  std::vector<double> tokens;  // layer * num_experts + expert
  std::vector<double> rtt_s;   // by the table's node index; 0 = not measured
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, head_load& x) {
  return f(caf::meta::type_name("head_load"), x.tokens, x.rtt_s);
}

/// What an expert host measured: rows computed and compute seconds, over its lifetime.
struct host_speed {
  uint64_t rows = 0;
  double compute_s = 0;
  int64_t resident_bytes = 0;
  uint64_t frames = 0;   // dispatch frames answered
  double service_s = 0;  // their time from arrival to reply, summed
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, host_speed& x) {
  return f(caf::meta::type_name("host_speed"), x.rows, x.compute_s, x.resident_bytes, x.frames,
           x.service_s);
}

/// The live placement as operators see it (`xmesh cluster placement`).
struct placement_report {
  placement_table table;
  int64_t bytes_moved = 0;     // weights copied by replications and migrations so far
  int64_t replications = 0;    // replicas added (a migration counts once here)
  int64_t retirements = 0;     // replicas retired (a migration counts once here)
  int64_t failed_moves = 0;    // orders that failed after they were accepted
  bool rebalancing = false;    // an order is being carried out
  double balancedness = 1;     // of the last measured load under the live table
  std::vector<double> tokens;  // the last measured load: routed tokens per layer * experts + e
  int64_t rebalances = 0;      // rebalances that carried out at least one order
  int64_t automatic = 0;       // ... of them started by the automatic loop
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, placement_report& x) {
  return f(caf::meta::type_name("placement_report"), x.table, x.bytes_moved, x.replications,
           x.retirements, x.failed_moves, x.rebalancing, x.balancedness, x.tokens, x.rebalances,
           x.automatic);
}

/// What one rebalance did.
struct rebalance_report {
  double balancedness_before = 1;  // measured load under the table the rebalance started from
  double balancedness_after = 1;   // the same load under the table it left
  int64_t orders = 0;              // replications, retirements and migrations carried out
  uint64_t version = 0;            // placement version afterwards
  std::string note;                // why nothing moved, when nothing did
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rebalance_report& x) {
  return f(caf::meta::type_name("rebalance_report"), x.balancedness_before, x.balancedness_after,
           x.orders, x.version, x.note);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, placement_table& x) {
  return f(caf::meta::type_name("placement_table"), x.version, x.num_layers, x.num_experts, x.nodes,
           x.addresses, x.replica_begin, x.replica_node);
}

/// One generation request, as `xmesh generate --cluster` sends it to a head.
struct generate_request {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 16;
  double temperature = 0;
  int64_t top_k = 0;
  double top_p = 1;
  uint64_t seed = 0;
  bool keep_all_logits = false;
  bool stop_at_eos = true;
  std::string model;  // the client's model::model_identity; empty: not checked
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_request& x) {
  return f(caf::meta::type_name("generate_request"), x.prompt, x.max_new_tokens, x.temperature,
           x.top_k, x.top_p, x.seed, x.keep_all_logits, x.stop_at_eos, x.model);
}

/// The head's answer; logits travel as raw bytes (CAF 0.17 serialises vector<float> element by
/// element).
struct generate_reply {
  std::vector<int32_t> generated;
  std::vector<uint8_t> logits;  // float32 [positions, vocab] when requested
  int64_t positions = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t decode_steps = 0;
  int64_t dispatches = 0;       // router round trips (one per layer per step, all nodes at once)
  double dispatch_seconds = 0;  // their total time
  std::vector<double> token_seconds;  // when each generated token was picked, from the start
  std::string error;                  // non-empty: the request failed (one line)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_reply& x) {
  return f(caf::meta::type_name("generate_reply"), x.generated, x.logits, x.positions,
           x.prefill_seconds, x.decode_seconds, x.decode_steps, x.dispatches, x.dispatch_seconds,
           x.token_seconds, x.error);
}

/// An expert replica an expert host has loaded and warmed.
struct expert_loaded {
  int64_t bytes = 0;
  double seconds = 0;
  std::string source;  // "local files" or "peer NAME"
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, expert_loaded& x) {
  return f(caf::meta::type_name("expert_loaded"), x.bytes, x.seconds, x.source);
}

/// A node's answer once a change took effect: a pushed table drained (its version), a replica
/// retired.
struct acknowledged {
  uint64_t value = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, acknowledged& x) {
  return f(caf::meta::type_name("acknowledged"), x.value);
}

/// What the coordinator knows about membership.
struct cluster_status {
  std::vector<std::string> registered;  // members now (joined nodes included)
  std::vector<std::string> missing;     // listed in the cluster file, never registered
  std::vector<std::string> silent;      // registered, but no heartbeat within the timeout
  std::vector<std::string> dead;        // declared dead, not back
  std::vector<std::string> rejoining;   // back from dead, serving again after steady beats
  std::vector<std::string> drained;     // drained and stopped by an operator
  uint64_t placement_version = 0;
  int64_t deaths = 0;   // nodes declared dead so far (a flapping node counts each time)
  int64_t rejoins = 0;  // dead nodes that served again
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_status& x) {
  return f(caf::meta::type_name("cluster_status"), x.registered, x.missing, x.silent, x.dead,
           x.rejoining, x.drained, x.placement_version, x.deaths, x.rejoins);
}

/// A node's data-plane counters, for `xmesh cluster status` and tests.
struct node_stats {
  std::string name;
  uint64_t frames_served = 0;
  uint64_t frames_dropped = 0;
  uint64_t frames_shared = 0;     // served with the experts shared by its compute threads
  uint64_t expert_rows = 0;       // rows its experts computed (frames and local batches)
  double expert_seconds = 0;      // time its experts spent computing them
  int64_t resident_bytes = 0;     // weights of the replicas it holds
  double service_seconds = 0;     // frames' time from arrival to reply (experts role)
  uint64_t frames_sent = 0;       // dispatch frames this head sent (head role)
  double encode_seconds = 0;      // building them (gathering rows, checksum)
  double decode_seconds = 0;      // validating the replies and copying their rows out
  double round_trip_seconds = 0;  // send to reply, summed over frames
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_stats& x) {
  return f(caf::meta::type_name("node_stats"), x.name, x.frames_served, x.frames_dropped,
           x.frames_shared, x.expert_rows, x.expert_seconds, x.resident_bytes, x.service_seconds,
           x.frames_sent, x.encode_seconds, x.decode_seconds, x.round_trip_seconds);
}

}  // namespace xmesh::actors

CAF_BEGIN_TYPE_ID_BLOCK(xmesh, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::node_info))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::placement_table))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::generate_request))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::generate_reply))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::cluster_status))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::node_stats))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::move_order))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::head_load))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::host_speed))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::placement_report))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::rebalance_report))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::expert_loaded))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::acknowledged))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::operator_proof))
// Coordinator: a node asks for the placement table, registers (node_info; the answer is the
// table it routes with) and beats (name).
CAF_ADD_ATOM(xmesh, xmesh::actors, register_atom, "register")
CAF_ADD_ATOM(xmesh, xmesh::actors, heartbeat_atom, "heartbeat")
CAF_ADD_ATOM(xmesh, xmesh::actors, placement_atom, "placement")
CAF_ADD_ATOM(xmesh, xmesh::actors, status_atom, "status")
// Any node: its data-plane counters.
CAF_ADD_ATOM(xmesh, xmesh::actors, stats_atom, "stats")
// Head: runs one generation request.
CAF_ADD_ATOM(xmesh, xmesh::actors, generate_atom, "generate")
// Coordinator: the live table with its counters (placement_atom, report_atom), one rebalance
// now, and operators' orders (move_order), each answered once carried out.
CAF_ADD_ATOM(xmesh, xmesh::actors, report_atom, "report")
CAF_ADD_ATOM(xmesh, xmesh::actors, rebalance_atom, "rebalance")
CAF_ADD_ATOM(xmesh, xmesh::actors, move_atom, "move")
CAF_ADD_ATOM(xmesh, xmesh::actors, tick_atom, "tick")
// Heads: a pushed table (answered once no batch routed with an older one is in flight), and
// their routed-token counts. Expert hosts: load or retire a replica, their compute speed.
CAF_ADD_ATOM(xmesh, xmesh::actors, load_atom, "load")
CAF_ADD_ATOM(xmesh, xmesh::actors, retire_atom, "retire")
CAF_ADD_ATOM(xmesh, xmesh::actors, speed_atom, "speed")
// (A pushed table is answered with its version, a retirement with 1.)
// Coordinator: drain a node (move its experts away, then stop it). Node: stop the process.
CAF_ADD_ATOM(xmesh, xmesh::actors, drain_atom, "drain")
CAF_ADD_ATOM(xmesh, xmesh::actors, stop_atom, "stop")
// Node-internal: an expert actor runs what queued for it; the coordinator was reached again.
CAF_ADD_ATOM(xmesh, xmesh::actors, run_atom, "run")
CAF_ADD_ATOM(xmesh, xmesh::actors, coordinator_atom, "coord")
CAF_END_TYPE_ID_BLOCK(xmesh)

namespace xmesh::actors {

/// The COORDINATOR actor: membership, liveness and the live placement; it carries out every
/// change of placement make-before-break and pushes each new version to every node.
using coordinator_actor = caf::typed_actor<
    // a node joins (again) with what it holds; the answer is the table it routes or serves with,
    // or an error naming both models when its model differs from the cluster's
    caf::replies_to<register_atom, node_info>::with<placement_table>,
    // what a starting expert node should load: the table with that node's assignment
    caf::replies_to<placement_atom, std::string>::with<placement_table>,
    // liveness: a node's beat (answered false when the coordinator does not count it as a live
    // member: it restarted, or declared the node dead; the node registers again), and the
    // coordinator's own check every heartbeat period
    caf::replies_to<heartbeat_atom, std::string>::with<bool>, caf::reacts_to<heartbeat_atom>,
    // move a node's experts away, then stop it; answered with the table once it stopped
    caf::replies_to<drain_atom, std::string, operator_proof>::with<placement_table>,
    // registered, missing and silent nodes
    caf::replies_to<status_atom>::with<cluster_status>,
    // the live table
    caf::replies_to<placement_atom>::with<placement_table>,
    // the live table with bytes moved and order counters
    caf::replies_to<placement_atom, report_atom>::with<placement_report>,
    // measure, plan and apply now; answered when every resulting order is done
    caf::replies_to<rebalance_atom, operator_proof>::with<rebalance_report>,
    // the automatic loop's timer: rebalance unless busy
    caf::reacts_to<tick_atom>,
    // internal: the current order's old replica retires now (its heads have drained)
    caf::reacts_to<retire_atom>,
    // one operator order; answered with the table once done, or an error naming the reason
    caf::replies_to<move_atom, move_order, operator_proof>::with<placement_table>>;

}  // namespace xmesh::actors
