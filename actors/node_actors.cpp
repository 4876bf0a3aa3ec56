#include "actors/node_actors.hpp"

#include <pthread.h>

#include <cstdio>
#include <future>
#include <map>
#include <thread>

#include "actors/control_plane.hpp"
#include "actors/coordinator_actor.hpp"
#include "actors/node.hpp"

namespace xmesh::actors {

namespace {

using namespace std::chrono_literals;

// Runs `work(args...)` on a thread of its own (it blocks: copying weights, waiting for a drain or
// a retirement) and answers the current request with its result, or its exception's text. `busy`
// (node_runtime::busy()) keeps the node's parts alive until the work is done: the handler holds
// it, since CAF drops the function that made the behavior before the request arrives (holding it
// there let a node shut down under a worker that then used its freed router).
template <class Result, class Work, class... Args>
auto on_own_thread(caf::event_based_actor* self, std::shared_ptr<void> busy, Work work,
                   Args... args) {
  auto worker =
      self->spawn<caf::detached>([busy, work](caf::event_based_actor* w) -> caf::behavior {
        return {[busy, work, w](Args... xs) -> caf::result<Result> {
          const auto holding = busy;  // beyond quit(), which may drop this handler
          w->quit();
          try {
            return work(xs...);
          } catch (const std::exception& e) {
            return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
          }
        }};
      });
  return self->delegate(worker, std::move(args)...);
}

// Blocks until `start(done)` has called done, or throws after `limit`.
template <class Start>
void wait_for_callback(Start start, std::chrono::seconds limit, const std::string& what) {
  auto finished = std::make_shared<std::promise<void>>();
  auto future = finished->get_future();
  start([finished] { finished->set_value(); });
  if (future.wait_for(limit) != std::future_status::ready)
    throw std::runtime_error(what + " did not finish within " + std::to_string(limit.count()) +
                             " s");
}

// Generations answered by the node actor once their thread is done.
struct pending_generations {
  uint64_t next = 0;
  std::map<uint64_t, caf::typed_response_promise<generate_reply>> waiting;
};

}  // namespace

caf::behavior node_actor(caf::event_based_actor* self, node_runtime* rt) {
  auto generations = std::make_shared<pending_generations>();
  auto no_role = [](const char* role) {
    return caf::make_error(caf::sec::runtime_error,
                           std::string("this node has no ") + role + " role");
  };
  // Tables, loads, retirements and stops come from the coordinator's process only: another
  // member (any holder of a cluster certificate) must not steer or stop this node.
  auto not_coordinator = [=](const char* what) -> std::optional<caf::error> {
    if (rt->from_coordinator(self->current_sender())) return std::nullopt;
    std::fprintf(stderr, "xmesh node %s: refused %s from a process that is not the coordinator\n",
                 rt->self().name.c_str(), what);
    return caf::make_error(caf::sec::runtime_error, "node '" + rt->self().name + "' takes " + what +
                                                        " only from its coordinator");
  };
  return {
      [=](stats_atom) { return rt->stats(); },
      // -- coordinator role: the coordinator actor answers --------------------------------
      [=](register_atom a, node_info& info) -> caf::result<placement_table> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a, std::move(info));
      },
      [=](heartbeat_atom a, std::string& name) -> caf::result<bool> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a, std::move(name));
      },
      [=](placement_atom a, std::string& name) -> caf::result<placement_table> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a, std::move(name));
      },
      [=](drain_atom a, std::string& name, operator_proof& proof) -> caf::result<placement_table> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a, std::move(name), std::move(proof));
      },
      [=](stop_atom) -> caf::result<void> {
        if (auto refused = not_coordinator("a stop")) return *refused;
        std::fprintf(stderr, "xmesh node %s: drained: stopping\n", rt->self().name.c_str());
        rt->request_stop();
        return caf::unit;
      },
      [=](status_atom a) -> caf::result<cluster_status> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a);
      },
      [=](placement_atom a) -> caf::result<placement_table> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a);
      },
      [=](placement_atom a, report_atom b) -> caf::result<placement_report> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a, b);
      },
      [=](rebalance_atom a, operator_proof& proof) -> caf::result<rebalance_report> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a, std::move(proof));
      },
      [=](move_atom a, move_order& o, operator_proof& proof) -> caf::result<placement_table> {
        if (!rt->coordinator()) return no_role("coordinator");
        return self->delegate(rt->coordinator(), a, std::move(o), std::move(proof));
      },
      // -- every node: a new table; a head answers once it routes no frame with an older one
      [=](placement_atom, placement_table& table) -> caf::result<caf::message> {
        if (auto refused = not_coordinator("a placement table")) return *refused;
        const uint64_t version = table.version;
        try {
          rt->set_placement(std::move(table));
        } catch (const std::exception& e) {
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        if (!rt->router()) return caf::make_message(acknowledged{version});
        return on_own_thread<acknowledged>(
            self, rt->busy(),
            [rt](placement_atom, uint64_t v) {
              wait_for_callback([&](auto done) { rt->router()->when_drained(v, done); }, 60s,
                                "draining version " + std::to_string(v));
              return acknowledged{v};
            },
            placement_atom_v, version);
      },
      // -- head role ------------------------------------------------------------------------
      [=](load_atom) -> caf::result<head_load> {
        if (!rt->router()) return no_role("head");
        return rt->router()->load();
      },
      [=](generate_atom, generate_request& request) -> caf::result<generate_reply> {
        // A generation blocks: it runs on a thread of its own, so independent requests overlap,
        // and the node actor itself answers when it is done.
        auto promise = self->make_response_promise<generate_reply>();
        uint64_t id = generations->next++;
        generations->waiting.emplace(id, promise);
        std::thread([rt, id, me = caf::actor_cast<caf::actor>(self), request = std::move(request)] {
          pthread_setname_np(pthread_self(), "xmesh.session");  // for ps, top and perf sched
          caf::anon_send(me, generate_atom_v, id, rt->run_generation(request));
        }).detach();
        return promise;
      },
      [=](generate_atom, uint64_t id, generate_reply& reply) {
        auto it = generations->waiting.find(id);
        if (it == generations->waiting.end()) return;
        it->second.deliver(std::move(reply));
        generations->waiting.erase(it);
      },
      // -- experts role -----------------------------------------------------------------------
      [=](load_atom a, int64_t layer, int64_t expert, int64_t bytes_per_s, std::string& peer,
          std::string& peer_address, uint64_t checksum) -> caf::result<caf::message> {
        if (auto refused = not_coordinator("a load")) return *refused;
        return on_own_thread<expert_loaded>(
            self, rt->busy(),
            [rt](load_atom, int64_t l, int64_t e, int64_t bw, const std::string& from,
                 const std::string& address,
                 uint64_t sum) { return rt->load_replica(l, e, bw, from, address, sum); },
            a, layer, expert, bytes_per_s, std::move(peer), std::move(peer_address), checksum);
      },
      [=](retire_atom a, int64_t layer, int64_t expert) -> caf::result<caf::message> {
        if (auto refused = not_coordinator("a retirement")) return *refused;
        return on_own_thread<acknowledged>(
            self, rt->busy(),
            [rt](retire_atom, int64_t l, int64_t e) {
              if (!rt->host()) throw std::runtime_error("not an expert node");
              wait_for_callback([&](auto done) { rt->host()->retire(l, e, done); }, 600s,
                                "retiring expert " + std::to_string(e));
              return acknowledged{1};
            },
            a, layer, expert);
      },
      [=](speed_atom) -> caf::result<host_speed> {
        if (!rt->host()) return no_role("experts");
        return rt->host()->speed();
      },
  };
}

caf::behavior membership_actor(caf::stateful_actor<membership_state>* self, node_runtime* rt,
                               caf::actor coordinator, std::optional<node_config> remote,
                               std::chrono::milliseconds period) {
  const std::string name = rt->self().name;
  auto watch = [self, rt](caf::actor c) {
    self->monitor(c);
    rt->trust_coordinator(c);
    self->state.coordinator = std::move(c);
  };
  watch(std::move(coordinator));
  self->set_down_handler([=](caf::down_msg& down) {
    if (!self->state.coordinator || down.source != self->state.coordinator.address()) return;
    self->state.coordinator = nullptr;
    std::fprintf(stderr, "xmesh node %s: lost the coordinator (%s); reconnecting\n", name.c_str(),
                 self->system().render(down.reason).c_str());
  });
  self->send(self, heartbeat_atom_v);
  return {
      [=](heartbeat_atom) {
        self->delayed_send(self, period, heartbeat_atom_v);
        rt->refresh_metrics();
        auto& st = self->state;
        if (!st.coordinator) {
          if (st.reconnecting || !remote) return;
          st.reconnecting = true;
          std::thread([sys = &self->system(), me = caf::actor_cast<caf::actor>(self),
                       gate = rt->gate(), where = *remote] {
            auto a = try_reach(*sys, *gate, where);
            caf::anon_send(me, coordinator_atom_v, a ? *a : caf::actor{});
          }).detach();
          return;
        }
        self->request(st.coordinator, period * 4, heartbeat_atom_v, name)
            .then(
                [=](bool known) {
                  if (!known) self->send(self, register_atom_v);
                },
                [](const caf::error&) {});  // a lost coordinator shows as a down message
      },
      [=](coordinator_atom, caf::actor& found) {
        self->state.reconnecting = false;
        if (!found) return;
        watch(std::move(found));
        self->send(self, register_atom_v);
      },
      [=](register_atom) {
        if (!self->state.coordinator || self->state.registering || rt->stopping()) return;
        self->state.registering = true;
        self->request(self->state.coordinator, 10s, register_atom_v, rt->info())
            .then(
                [=](placement_table& table) {
                  self->state.registering = false;
                  self->state.last_refusal.clear();
                  std::fprintf(stderr,
                               "xmesh node %s: registered with the coordinator again "
                               "(placement version %llu)\n",
                               name.c_str(), static_cast<unsigned long long>(table.version));
                  try {
                    rt->set_placement(std::move(table));
                  } catch (const std::exception& e) {
                    std::fprintf(stderr, "xmesh node %s: %s\n", name.c_str(), e.what());
                  }
                },
                [=](const caf::error& e) {
                  self->state.registering = false;
                  auto why = error_text(self->system(), e);
                  if (why == self->state.last_refusal) return;
                  std::fprintf(stderr, "xmesh node %s: registration failed: %s\n", name.c_str(),
                               why.c_str());
                  self->state.last_refusal = why;
                });
      },
  };
}

}  // namespace xmesh::actors
