// The actors a node runs on the control plane: its face (every role's messages, answered from
// the runtime) and its membership (heartbeats, registering again, reconnecting).
#pragma once

#include <caf/all.hpp>
#include <chrono>
#include <optional>
#include <string>

#include "actors/cluster_config.hpp"

namespace xmesh::actors {

class node_runtime;

/// The control-plane face of a node: every role's messages, answered from `rt`.
caf::behavior node_actor(caf::event_based_actor* self, node_runtime* rt);

// Keeps the node a member. It beats every period; when the coordinator does not count the node
// as a live member (the coordinator restarted, or declared the node dead while it was stopped
// or cut off), the node registers again with what it holds. When the coordinator's process goes
// away, it reconnects (one attempt per period, off the actor's thread) and registers again.
struct membership_state {
  caf::actor coordinator;
  bool reconnecting = false;
  bool registering = false;  // one registration at a time: beats may answer `false` repeatedly
  std::string last_refusal;
  static inline const char* name = "membership";
};

/// `remote`: where to reconnect to the coordinator when it lives on another node.
caf::behavior membership_actor(caf::stateful_actor<membership_state>* self, node_runtime* rt,
                               caf::actor coordinator, std::optional<node_config> remote,
                               std::chrono::milliseconds period);

}  // namespace xmesh::actors
