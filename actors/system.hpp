// A CAF actor system set up the way every ExpertMesh process needs it.
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "actors/cluster_config.hpp"
#include "actors/control_plane.hpp"
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

/// A request failed because its peer went away (process died, connection dropped) or could not
/// be reached at all: the caller may try another peer.
struct peer_lost : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The actor a node publishes on its control port, retried until `timeout`; throws
/// "cannot reach KIND 'NAME' at HOST:PORT (reason)".
inline caf::actor reach_node(caf::actor_system& sys, transport::control_gate& gate,
                             const node_config& node, std::chrono::milliseconds timeout,
                             const std::string& kind = "node") {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    // Each try waits for an answer until the deadline, and at least 3 s (a busy peer).
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto a = try_reach(sys, gate, node, std::max(left, std::chrono::milliseconds(3000)));
    if (a) return *a;
    const auto& ctx = a.error().context();
    last = ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0) : sys.render(a.error());
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  throw peer_lost("cannot reach " + kind + " '" + node.name + "' at " + node.host + ":" +
                  std::to_string(node.control_port) + " (" + last + ")");
}

/// Sends a request from a blocking context and waits for the typed answer; throws with `what`
/// and CAF's reason (timeout, unreachable actor, error reply). NOTE: the request goes out from an
/// event-based actor, not a scoped (blocking) one: with CAF 0.17, a blocking actor waiting on a
/// remote reply sometimes never wakes although the reply arrived (about one request in a
/// thousand under load; the reply bytes are on the client's socket).
template <class T, class... Ts>
T ask(caf::actor_system& sys, const caf::actor& to, std::chrono::seconds timeout,
      const std::string& what, Ts&&... msg) {
  auto result = std::make_shared<std::promise<caf::expected<T>>>();
  auto future = result->get_future();
  sys.spawn([=, psys = &sys,
             m = caf::make_message(std::forward<Ts>(msg)...)](caf::event_based_actor* self) {
    // A peer that goes away (its process died, the connection dropped) fails the request at
    // once instead of leaving the caller waiting for the timeout.
    self->monitor(to);
    self->set_down_handler([=](caf::down_msg& down) {
      result->set_value(caf::make_error(caf::sec::request_receiver_down,
                                        "it went away (" + psys->render(down.reason) + ")"));
      self->quit();
    });
    self->request(to, timeout, m)
        .then(
            [=](T& value) {
              result->set_value(std::move(value));
              self->quit();
            },
            [=](caf::error& e) {
              result->set_value(std::move(e));
              self->quit();
            });
  });
  auto got = future.get();
  if (!got) {
    const auto& ctx = got.error().context();
    auto text = what + ": " +
                (ctx.template match_elements<std::string>() ? ctx.template get_as<std::string>(0)
                                                            : sys.render(got.error()));
    if (got.error().category() == caf::atom("system") &&
        got.error().code() == static_cast<uint8_t>(caf::sec::request_receiver_down))
      throw peer_lost(text);
    throw std::runtime_error(text);
  }
  return std::move(*got);
}

/// A client's control-plane connection to a node, proven by an answered first request.
struct proven_connection {
  std::unique_ptr<transport::control_gate> gate;  // outlives the runtime's connection
  std::unique_ptr<actor_runtime> runtime;
  caf::actor node;
};

/// Connects a client (a CLI command) to `node`. NOTE: now and then (about one new connection in a
/// thousand under heavy connection churn, here and with the code before the live placement)
/// CAF 0.17's middleman serves a new connection's requests but never sends their answers on it,
/// and repeating on the same connection does not help. A cheap first request proves the
/// connection; a fresh actor system (so a fresh connection) replaces one that fails it. Throws
/// naming the node when it cannot be reached or never answers.
inline proven_connection connect_proven(const cluster_config& cluster, const node_config& node,
                                        std::chrono::milliseconds timeout,
                                        const std::string& kind = "node") {
  for (int attempt = 1;; ++attempt) {
    proven_connection c{make_gate(cluster, "operator"), std::make_unique<actor_runtime>(1), {}};
    c.node = reach_node(*c.runtime->system, *c.gate, node, timeout, kind);
    try {
      (void)ask<node_stats>(*c.runtime->system, c.node, std::chrono::seconds(2), "first request",
                            stats_atom_v);
      return c;
    } catch (const std::exception& e) {
      if (attempt == 4)
        throw std::runtime_error(kind + " '" + node.name +
                                 "' accepts connections but does not answer (" + e.what() + ")");
    }
  }
}

}  // namespace xmesh::actors
