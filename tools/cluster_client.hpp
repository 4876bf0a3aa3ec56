// Client side of a running cluster: reach a node's actor by its control address, with retries.
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "actors/cluster_config.hpp"

namespace xmesh::tools {

/// The actor of `node`; throws naming the node when it cannot be reached within `timeout`.
inline caf::actor reach_node(caf::actor_system& sys, const actors::node_config& node,
                             std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    auto a = sys.middleman().remote_actor(node.host, node.control_port);
    if (a) return *a;
    last = sys.render(a.error());
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  throw std::runtime_error("cannot reach node '" + node.name + "' at " + node.host + ":" +
                           std::to_string(node.control_port) + " (" + last + ")");
}

}  // namespace xmesh::tools
