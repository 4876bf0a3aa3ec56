// Every control-plane message between ExpertMesh actors, and the project's only CAF type-ID
// block. The control plane never carries activations: those move as transport frames.
#pragma once

#include <caf/all.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "actors/placement_table.hpp"

namespace xmesh::actors {

/// A node announcing itself to the coordinator.
struct node_info {
  std::string name;
  std::vector<std::string> roles;
  std::string data_address;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.name, x.roles, x.data_address);
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
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_request& x) {
  return f(caf::meta::type_name("generate_request"), x.prompt, x.max_new_tokens, x.temperature,
           x.top_k, x.top_p, x.seed, x.keep_all_logits, x.stop_at_eos);
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
  std::string error;            // non-empty: the request failed (one line)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_reply& x) {
  return f(caf::meta::type_name("generate_reply"), x.generated, x.logits, x.positions,
           x.prefill_seconds, x.decode_seconds, x.decode_steps, x.dispatches, x.dispatch_seconds,
           x.error);
}

/// What the coordinator knows: registered nodes and the ones still missing.
struct cluster_status {
  std::vector<std::string> registered;
  std::vector<std::string> missing;
  std::vector<std::string> silent;  // registered, but no heartbeat for 3 s
  uint64_t placement_version = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_status& x) {
  return f(caf::meta::type_name("cluster_status"), x.registered, x.missing, x.silent,
           x.placement_version);
}

/// A node's data-plane counters, for `xmesh cluster status` and tests.
struct node_stats {
  std::string name;
  uint64_t frames_served = 0;
  uint64_t frames_dropped = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_stats& x) {
  return f(caf::meta::type_name("node_stats"), x.name, x.frames_served, x.frames_dropped);
}

}  // namespace xmesh::actors

CAF_BEGIN_TYPE_ID_BLOCK(xmesh, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::node_info))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::placement_table))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::generate_request))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::generate_reply))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::cluster_status))
CAF_ADD_TYPE_ID(xmesh, (xmesh::actors::node_stats))
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
// Router actor (one per MoE layer on a head): a layer's batch to dispatch, a node's reply in.
CAF_ADD_ATOM(xmesh, xmesh::actors, dispatch_atom, "dispatch")
CAF_ADD_ATOM(xmesh, xmesh::actors, reply_atom, "reply")
// Expert actor: runs the batches queued for it.
CAF_ADD_ATOM(xmesh, xmesh::actors, run_atom, "run")
CAF_END_TYPE_ID_BLOCK(xmesh)
