// A CAF actor system set up the way every ExpertMesh process needs it.
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "actors/cluster_config.hpp"
#include "actors/protocol.hpp"

namespace xmesh::actors {

/// The config must outlive the system; this keeps them together.
struct actor_runtime {
  caf::actor_system_config config;
  std::unique_ptr<caf::actor_system> system;

  /// `threads`: CAF scheduler workers (expert actors run on them).
  explicit actor_runtime(int threads) {
    config.add_message_types<caf::id_block::xmesh>();
    config.load<caf::io::middleman>();
    config.set("scheduler.max-threads", std::max(2, threads));
    // Work sharing wakes an idle worker at once; CAF's default work stealing lets idle workers
    // sleep up to 10 ms between polls, which would sit on every expert batch.
    config.set("scheduler.policy", caf::atom("sharing"));
    config.set("logger.verbosity", caf::atom("quiet"));
    system = std::make_unique<caf::actor_system>(config);
  }
};

/// How long to keep trying to reach a peer (env XMESH_CONNECT_TIMEOUT_MS, default 30 s).
inline std::chrono::milliseconds connect_timeout() {
  const char* v = std::getenv("XMESH_CONNECT_TIMEOUT_MS");
  return std::chrono::milliseconds(v && *v ? std::atol(v) : 30000);
}

/// The actor a node publishes on its control port, retried until `timeout`; throws
/// "cannot reach KIND 'NAME' at HOST:PORT (reason)".
inline caf::actor reach_node(caf::actor_system& sys, const node_config& node,
                             std::chrono::milliseconds timeout, const std::string& kind = "node") {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    auto a = sys.middleman().remote_actor(node.host, node.control_port);
    if (a) return *a;
    last = sys.render(a.error());
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  throw std::runtime_error("cannot reach " + kind + " '" + node.name + "' at " + node.host + ":" +
                           std::to_string(node.control_port) + " (" + last + ")");
}

/// Sends a request from a blocking context and waits for the typed answer; throws with `what`
/// and CAF's reason (timeout, unreachable actor, error reply).
template <class T, class... Ts>
T ask(caf::actor_system& sys, const caf::actor& to, std::chrono::seconds timeout,
      const std::string& what, Ts&&... msg) {
  caf::scoped_actor self{sys};
  std::optional<T> out;
  std::string error;
  self->request(to, timeout, std::forward<Ts>(msg)...)
      .receive([&](T& value) { out = std::move(value); },
               [&](caf::error& e) { error = sys.render(e); });
  if (!out) throw std::runtime_error(what + ": " + error);
  return std::move(*out);
}

}  // namespace xmesh::actors
