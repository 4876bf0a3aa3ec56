// How a process's actor system meets the control plane: through its gate (transport/gate), never
// on a socket of CAF's own. A node publishes its actor behind the gate's port; any process
// reaches a node's actor by having the gate dial it.
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <memory>
#include <string>

#include "actors/cluster_config.hpp"
#include "transport/gate/control_gate.hpp"

namespace xmesh::actors {

/// This process's gate: TLS with the certificate of `party` (a node's name, or "operator" for
/// commands) when the cluster is authenticated, plain connections with `security: none`. Throws
/// naming a missing key file.
std::unique_ptr<transport::control_gate> make_gate(const cluster_config& c,
                                                   const std::string& party,
                                                   transport::gate_limits limits = {});

/// Serves `actor` to every connection the gate admits on host:port, as CAF's publish would, but
/// with no listening socket of CAF's. Throws naming the address when the gate cannot listen.
void publish_behind(caf::actor_system& sys, transport::control_gate& gate, const caf::actor& actor,
                    const std::string& host, uint16_t port);

/// One try at the actor `node` publishes, given up after `limit` (a stalled node accepts the
/// connection and never answers); the error says why (with TLS, the handshake's reason: a
/// foreign certificate, the wrong node).
caf::expected<caf::actor> try_reach(caf::actor_system& sys, transport::control_gate& gate,
                                    const node_config& node,
                                    std::chrono::milliseconds limit = std::chrono::seconds(30));

}  // namespace xmesh::actors
