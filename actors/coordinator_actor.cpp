#include "actors/coordinator_actor.hpp"

#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include "actors/admission.hpp"
#include "actors/coordinator.hpp"
#include "actors/rebalance.hpp"

namespace xmesh::actors {

namespace {

using namespace std::chrono_literals;

/// One unit of the coordinator's work queue: an order, a rebalance, a rebalance's report, or
/// the end of a drain (stop the emptied node).
struct job {
  enum kind_t { order, rebalance, report, stop } kind = order;
  move_order what;
  caf::typed_response_promise<placement_table> order_done;   // operator orders only
  caf::typed_response_promise<rebalance_report> rebalanced;  // rebalance and report jobs
  std::shared_ptr<rebalance_report> summary;                 // shared by a rebalance's jobs
  std::shared_ptr<rebalance_inputs> measured;                // the load a report scores
  std::string node;                                          // stop: the drained node
  std::string waiting_on;  // the node whose answer the order waits for (load, retirement)
  bool abandoned = false;  // that node died: the order ended, its late answer is ignored
};

struct coordinator_data {
  std::unique_ptr<coordinator_state> core;
  rebalance_config settings;
  coordinator_model model;
  std::deque<job> queue;
  bool busy = false;
  std::shared_ptr<job> draining;              // the order whose old replica retires next
  std::shared_ptr<job> current;               // the order being carried out
  std::set<std::string> peer_sourced;         // expert nodes that stream new replicas from a peer
  std::pair<std::string, uint64_t> fallback;  // the first store fallback registered: node, XXH3
  std::map<std::string, caf::node_id> processes;  // the process each member registered from
  std::filesystem::path keys;                     // the cluster's keys (empty: security none)
  std::chrono::milliseconds beat{250};    // the heartbeat period: how often liveness is checked
  uint64_t metered_version = UINT64_MAX;  // the table version the replica gauges show
  static inline const char* name = "coordinator";
};

using self_ptr = coordinator_actor::stateful_pointer<coordinator_data>;

std::chrono::milliseconds period(const rebalance_config& c) {
  return std::chrono::milliseconds(static_cast<int64_t>(c.period_s * 1000));
}

caf::error order_error(const std::string& what) {
  return caf::make_error(caf::sec::runtime_error, what);
}

void run_next(self_ptr self);
void retire_on_host(self_ptr self);
void stop_drained(self_ptr self, std::shared_ptr<job> j);

// Ends the current job and starts the next.
void finish(self_ptr self) {
  self->state.busy = false;
  self->state.core->set_rebalancing(!self->state.queue.empty());
  run_next(self);
}

// Sends a node its table without waiting for the answer. A request, not anon_send: a node takes
// tables only from its coordinator, so the message must carry the coordinator as its sender.
void tell_table(self_ptr self, const caf::actor& node, const placement_table& table) {
  self->request(node, 60s, placement_atom_v, table)
      .then([](const acknowledged&) {}, [](const caf::error&) {});
}

// Pushes the live table to every head and expert host; `then` runs once every head has
// answered, i.e. has switched and drained what it routed with older tables. A node that does not
// answer in time is skipped (it will not route with the old table again once it has the new).
void publish(self_ptr self, std::function<void()> then) {
  const auto& table = self->state.core->table();
  auto heads = self->state.core->members_with("head");
  auto hosts = self->state.core->members_with("experts");
  for (const auto& [name, actor] : hosts)
    if (!heads.count(name)) tell_table(self, actor, table);
  if (heads.empty()) return then();
  auto left = std::make_shared<size_t>(heads.size());
  auto done = std::make_shared<std::function<void()>>(std::move(then));
  for (const auto& [name, actor] : heads)
    self->request(actor, 60s, placement_atom_v, table)
        .then(
            [left, done](const acknowledged&) {
              if (--*left == 0) (*done)();
            },
            [self, left, done, name = name](const caf::error& e) {
              std::fprintf(stderr, "xmesh coordinator: head '%s' did not confirm a table: %s\n",
                           name.c_str(), error_text(self->system(), e).c_str());
              if (--*left == 0) (*done)();
            });
}

order_kind kind_of(const move_order& o) {
  return o.kind == move_order::replicate ? order_kind::replication
         : o.kind == move_order::migrate ? order_kind::migration
                                         : order_kind::retirement;
}

void fail_order(self_ptr self, job& j, const std::string& why) {
  self->state.core->count_failure();
  if (auto* m = self->state.model.metrics) m->order_done(kind_of(j.what), false, 0);
  if (j.order_done.pending()) j.order_done.deliver(order_error(why));
  if (j.summary) j.summary->note += (j.summary->note.empty() ? "" : "; ") + why;
  finish(self);
}

void order_done(self_ptr self, job& j) {
  if (j.summary) ++j.summary->orders;
  if (auto* m = self->state.model.metrics)
    m->order_done(kind_of(j.what), true,
                  j.what.kind == move_order::retire ? 0 : self->state.core->expert_bytes());
  if (j.order_done.pending()) j.order_done.deliver(self->state.core->table());
  finish(self);
}

// retire/migrate, second half: publish without the old replica, wait for the heads to drain,
// then let the old host finish what it was sent and free the memory.
void retire_step(self_ptr self, std::shared_ptr<job> j) {
  auto& core = *self->state.core;
  const auto o = j->what;
  // The new replica's node may have died since it was published: never retire the last one.
  if (core.table().replicas(o.layer, o.expert).size() < 2) {
    if (o.kind == move_order::migrate)
      return fail_order(self, *j, "'" + o.to + "' died before the old replica could retire");
    return fail_order(self, *j,
                      "it would leave expert " + std::to_string(o.expert) + " of layer " +
                          std::to_string(o.layer) + " without a replica");
  }
  core.remove_replica(o);
  self->state.draining = j;
  // NOTE: CAF 0.17 mismatches the answer of a request to a remote actor made inside another
  // request's response handler, so the retirement continues from a message of its own.
  publish(self, [self] { self->send(self, retire_atom_v); });
}

// retire/migrate, last step: the old host finishes what it was sent and frees the memory.
void retire_on_host(self_ptr self) {
  auto j = std::move(self->state.draining);
  const auto o = j->what;
  auto host = self->state.core->actor_of(o.from);
  if (!host) {
    self->state.core->release(o);
    return order_done(self, *j);
  }
  j->waiting_on = o.from;
  self->request(host, 120s, retire_atom_v, o.layer, o.expert)
      .then(
          [self, j, o](const acknowledged&) {
            if (j->abandoned) return;
            j->waiting_on.clear();
            self->state.core->release(o);
            order_done(self, *j);
          },
          [self, j, o](const caf::error& e) {
            if (j->abandoned) return;
            j->waiting_on.clear();
            self->state.core->release(o);  // the node lost it anyway
            fail_order(self, *j, "retiring on '" + o.from + "': " + error_text(self->system(), e));
          });
}

// replicate/migrate, first half: load and warm on the new host, then publish with it.
void load_step(self_ptr self, std::shared_ptr<job> j) {
  auto& core = *self->state.core;
  const auto o = j->what;
  // A node without its own copy streams the weights from a node that serves the expert.
  std::string peer_name, peer_address;
  if (self->state.peer_sourced.count(o.to)) {
    const auto& t = core.table();
    for (int32_t n : t.replicas(o.layer, o.expert))
      if (core.actor_of(t.nodes[n])) {
        peer_name = t.nodes[n];
        peer_address = t.addresses[n];
        break;
      }
  }
  const uint64_t checksum = self->state.model.checksum(o.layer, o.expert);
  core.reserve(o);
  j->waiting_on = o.to;
  self->request(core.actor_of(o.to), 2min, load_atom_v, o.layer, o.expert,
                self->state.settings.bandwidth_bytes_s, peer_name, peer_address, checksum)
      .then(
          [self, j, o](const expert_loaded&) {
            if (j->abandoned) return;
            j->waiting_on.clear();
            if (self->state.core->is_dead(o.to)) {  // it loaded, then missed its heartbeats
              self->state.core->unreserve(o);
              return fail_order(self, *j, "'" + o.to + "' died while loading");
            }
            self->state.core->add_replica(o);
            publish(self, [self, j, o] {
              if (o.kind == move_order::migrate) return retire_step(self, j);
              order_done(self, *j);
            });
          },
          [self, j, o](const caf::error& e) {
            if (j->abandoned) return;
            self->state.core->unreserve(o);
            fail_order(self, *j, "loading on '" + o.to + "': " + error_text(self->system(), e));
          });
}

// Asks every head for its routed tokens and every host for its speed, then queues the plan's
// orders ahead of everything else, followed by the report.
void rebalance_step(self_ptr self, std::shared_ptr<job> j) {
  auto& core = *self->state.core;
  const auto& table = core.table();
  auto in = std::make_shared<rebalance_inputs>();
  in->tokens.assign(table.num_layers * table.num_experts, 0.0);
  in->speed.assign(table.nodes.size(), 0.0);
  // Nodes that may not take replicas now (rejoining, draining, dead) keep what they hold.
  for (const auto& n : table.nodes)
    in->capacity.push_back(core.placeable(n)
                               ? std::min(core.capacity(n), table.num_layers * table.num_experts)
                               : static_cast<int64_t>(hosted_experts(table, n).size()));
  in->moe_layers = self->state.model.moe_layers;
  in->replicas_per_layer = self->state.settings.replicas_per_layer;
  in->hysteresis = self->state.settings.hysteresis;
  auto heads = core.members_with("head");
  auto hosts = core.members_with("experts");
  auto left = std::make_shared<size_t>(heads.size() + hosts.size());
  // Per table node: what its hosts measured, and the heads' round trips to it.
  auto hosts_measured = std::make_shared<std::vector<host_speed>>(table.nodes.size());
  auto rtt = std::make_shared<std::vector<std::pair<double, int>>>(table.nodes.size());
  auto plan = [self, j, in, hosts_measured, rtt] {
    auto& core = *self->state.core;
    std::vector<double> per_row;
    for (size_t n = 0; n < hosts_measured->size(); ++n) {
      auto [sum, count] = (*rtt)[n];
      per_row.push_back(seconds_per_row((*hosts_measured)[n], count > 0 ? sum / count : 0));
    }
    in->speed = relative_speeds(per_row);
    auto p = plan_rebalance(core.table(), *in);
    core.set_measured_load(in->tokens);
    j->summary->balancedness_before = p.balancedness_before;
    j->summary->balancedness_after = p.balancedness_before;
    core.set_balancedness(p.balancedness_before);
    if (p.orders.empty()) {
      j->summary->note = "the placement already fits the load";
    } else if (p.balancedness_after - p.balancedness_before < self->state.settings.min_gain) {
      j->summary->note = "a plan would gain less than min_gain";
      p.orders.clear();
    }
    job report{job::report, {}, {}, j->rebalanced, j->summary, in};
    self->state.queue.push_front(std::move(report));
    for (auto it = p.orders.rbegin(); it != p.orders.rend(); ++it) {
      job o;
      o.what = *it;
      o.summary = j->summary;
      self->state.queue.push_front(std::move(o));
    }
    finish(self);
  };
  if (*left == 0) return plan();
  auto one_done = [left, plan] {
    if (--*left == 0) plan();
  };
  for (const auto& [name, actor] : heads)
    self->request(actor, 10s, load_atom_v)
        .then(
            [in, rtt, one_done](const head_load& l) {
              for (size_t i = 0; i < l.tokens.size() && i < in->tokens.size(); ++i)
                in->tokens[i] += l.tokens[i];
              for (size_t n = 0; n < l.rtt_s.size() && n < rtt->size(); ++n)
                if (l.rtt_s[n] > 0) (*rtt)[n].first += l.rtt_s[n], ++(*rtt)[n].second;
              one_done();
            },
            [one_done](const caf::error&) { one_done(); });
  for (const auto& [name, actor] : hosts) {
    int32_t n = node_index(table, name);
    self->request(actor, 10s, speed_atom_v)
        .then(
            [in, n, one_done](const host_speed& s) {
              if (n >= 0 && s.compute_s > 0)
                in->speed[n] = static_cast<double>(s.rows) / s.compute_s;
              one_done();
            },
            [one_done](const caf::error&) { one_done(); });
  }
}

void run_next(self_ptr self) {
  auto& st = self->state;
  if (st.busy || st.queue.empty()) return;
  st.busy = true;
  st.core->set_rebalancing(true);
  auto j = std::make_shared<job>(std::move(st.queue.front()));
  st.queue.pop_front();
  st.current = j;
  switch (j->kind) {
    case job::rebalance:
      return rebalance_step(self, j);
    case job::report: {
      auto& r = *j->summary;
      r.version = st.core->table().version;
      r.balancedness_after = measure_balancedness(st.core->table(), *j->measured);
      st.core->set_balancedness(r.balancedness_after);
      const bool automatic = !j->rebalanced.pending();
      if (r.orders > 0) {
        st.core->count_rebalance(automatic);
        std::fprintf(stderr, "xmesh coordinator: %s rebalance: %lld orders, version %llu\n",
                     automatic ? "automatic" : "requested", static_cast<long long>(r.orders),
                     static_cast<unsigned long long>(r.version));
      }
      if (!automatic) j->rebalanced.deliver(r);
      return finish(self);
    }
    case job::stop:
      return stop_drained(self, j);
    case job::order:
      break;
  }
  if (auto why = st.core->check(j->what); !why.empty()) {
    if (j->order_done.pending()) j->order_done.deliver(order_error(why));
    if (j->summary) j->summary->note += (j->summary->note.empty() ? "" : "; ") + why;
    return finish(self);
  }
  if (j->what.kind == move_order::retire) return retire_step(self, j);
  load_step(self, j);
}

// Sends the live table to every live node, without waiting (used when a node's replicas vanish
// or appear: nothing routed with the old table needs to drain first).
void push_table(self_ptr self) {
  auto live = self->state.core->members_with("head");
  live.merge(self->state.core->members_with("experts"));  // a node with both roles gets it once
  for (const auto& [member, actor] : live) tell_table(self, actor, self->state.core->table());
}

// Gauges the coordinator owns, refreshed every heartbeat period (cheap: a new table's replica
// counts only when its version changed).
void publish_metrics(self_ptr self) {
  auto* m = self->state.model.metrics;
  if (!m) return;
  auto& core = *self->state.core;
  auto ages = core.heartbeat_ages();
  m->set_membership(static_cast<int64_t>(ages.size()), ages);
  m->set_rebalancing(self->state.busy || !self->state.queue.empty());
  m->set_balancedness(core.balancedness());
  if (core.table().version != self->state.metered_version) {
    m->set_replicas(core.table());
    self->state.metered_version = core.table().version;
  }
}

// Nodes silent past the heartbeat timeout are dead: the next version leaves out their replicas
// and goes to every live node at once (heads stop choosing them; rows in flight to them are
// re-sent by the routers). Rejoining nodes whose wait is over serve again. Each expert left
// without a replica gets one on the live node with the most room, through the usual orders;
// until then heads compute it from their own files.
void check_liveness(self_ptr self) {
  auto& core = *self->state.core;
  core.checked_liveness();
  for (const auto& name : core.newly_dead()) {
    const uint64_t before = core.table().version;
    auto orphans = core.declare_dead(name);
    // An order waiting for the dead node's answer ends now (its memory went with the node).
    if (auto j = self->state.current;
        j && self->state.busy && !j->abandoned && j->waiting_on == name) {
      j->abandoned = true;
      self->state.draining.reset();
      fail_order(self, *j, "'" + name + "' died");
    }
    std::fprintf(stderr,
                 "xmesh coordinator: node '%s' missed its heartbeats: declared dead, placement "
                 "version %llu, %zu experts without a replica\n",
                 name.c_str(), static_cast<unsigned long long>(core.table().version),
                 orphans.size());
    if (core.table().version != before) push_table(self);
    if (auto* m = self->state.model.metrics) m->failover();
  }
  for (const auto& name : core.finish_rejoins()) {
    if (auto* m = self->state.model.metrics) m->rejoin();
    std::fprintf(stderr, "xmesh coordinator: node '%s' rejoined: serves again, version %llu\n",
                 name.c_str(), static_cast<unsigned long long>(core.table().version));
    push_table(self);
  }
  if (!self->state.busy && self->state.queue.empty() && core.settled()) {
    const auto& table = core.table();
    for (int64_t slot : orphaned_experts(table)) {
      job j;
      j.what.kind = move_order::replicate;
      j.what.layer = slot / table.num_experts;
      j.what.expert = slot % table.num_experts;
      const auto& moe = self->state.model.moe_layers;
      if (std::find(moe.begin(), moe.end(), j.what.layer) == moe.end()) continue;
      j.what.to = core.roomiest_node_for(j.what.layer, j.what.expert);
      if (j.what.to.empty()) continue;  // nobody has room: heads keep computing it
      self->state.queue.push_back(std::move(j));
    }
  }
  run_next(self);
  publish_metrics(self);
}

// A drain's last step: every order emptied the node (else the drain failed and the node stays);
// it is told to stop and leaves the membership.
void stop_drained(self_ptr self, std::shared_ptr<job> j) {
  auto& core = *self->state.core;
  const bool emptied = j->summary->note.empty() && hosted_experts(core.table(), j->node).empty();
  if (!emptied) {
    core.end_drain(j->node, false);
    j->order_done.deliver(order_error(
        "cannot drain '" + j->node + "': " +
        (j->summary->note.empty() ? std::string("it still holds experts") : j->summary->note)));
    return finish(self);
  }
  if (auto node = core.actor_of(j->node))  // a request: the node checks who orders it to stop
    self->request(node, 60s, stop_atom_v).then([] {}, [](const caf::error&) {});
  core.end_drain(j->node, true);
  std::fprintf(stderr, "xmesh coordinator: node '%s' drained (%lld orders) and stopped\n",
               j->node.c_str(), static_cast<long long>(j->summary->orders));
  j->order_done.deliver(core.table());
  finish(self);
}

void queue_rebalance(self_ptr self, caf::typed_response_promise<rebalance_report> promise) {
  job j{job::rebalance, {}, {}, promise, std::make_shared<rebalance_report>()};
  self->state.queue.push_back(std::move(j));
  run_next(self);
}

coordinator_actor::behavior_type coordinator_fn(self_ptr self, cluster_config cluster,
                                                placement_table table, coordinator_model model) {
  self->state.core =
      std::make_unique<coordinator_state>(cluster, table, model.expert_bytes, model.identity);
  self->state.settings = cluster.rebalance;
  for (const auto& n : cluster.nodes)
    if (n.expert_source == "peer") self->state.peer_sourced.insert(n.name);
  if (cluster.security.authenticated()) self->state.keys = cluster.security.keys;
  self->state.model = std::move(model);
  if (self->state.settings.period_s > 0)
    self->delayed_send(self, period(self->state.settings), tick_atom_v);
  self->state.beat = std::chrono::milliseconds(
      std::max<int64_t>(10, static_cast<int64_t>(cluster.heartbeat.period_s * 1000)));
  self->delayed_send(self, self->state.beat, heartbeat_atom_v);
  return {
      [self](register_atom, const node_info& info) -> caf::result<placement_table> {
        auto& core = *self->state.core;
        auto why = self->state.keys.empty() ? std::string() : claim_refusal(self->state.keys, info);
        auto& first = self->state.fallback;
        if (why.empty()) why = fallback_refusal(first, info);
        if (why.empty()) why = core.admit(info);
        if (why.empty() && info.fallback != 0 && (first.first.empty() || first.first == info.name))
          first = {info.name, info.fallback};
        if (!why.empty()) {
          std::fprintf(stderr, "xmesh coordinator: refused: %s\n", why.c_str());
          return order_error(why);
        }
        const bool was_dead = core.is_dead(info.name);
        // A node that registers again restarted or reconnected: an order waiting for its answer
        // would never get one (CAF 0.17 keeps waiting on the old connection).
        if (auto j = self->state.current;
            j && self->state.busy && !j->abandoned && j->waiting_on == info.name) {
          j->abandoned = true;
          self->state.draining.reset();
          fail_order(self, *j, "'" + info.name + "' registered again while an order waited");
        }
        if (const auto& sender = self->current_sender())
          self->state.processes[info.name] = sender->node();
        if (core.register_node(info)) push_table(self);
        if (was_dead)
          std::fprintf(stderr, "xmesh coordinator: node '%s' is back (%zu replicas): rejoining\n",
                       info.name.c_str(), info.resident.size());
        return core.table();
      },
      [self](placement_atom, const std::string& name) {
        return self->state.core->assignment(name);
      },
      [self](heartbeat_atom, const std::string& name) {
        // A beat counts only from the process that registered the name: another member cannot
        // keep a dead node in the placement (it is told to register, which its certificate
        // forbids).
        const auto& sender = self->current_sender();
        auto at = self->state.processes.find(name);
        if (!sender || at == self->state.processes.end() || sender->node() != at->second)
          return false;
        return self->state.core->heartbeat(name);
      },
      [self](drain_atom, const std::string& name,
             const operator_proof& proof) -> caf::result<placement_table> {
        if (auto why = order_refusal(self->state.keys, proof, drain_text(name)); !why.empty())
          return order_error(why);
        std::vector<move_order> orders;
        try {
          orders = self->state.core->plan_drain(name);
        } catch (const std::exception& e) {
          return order_error(e.what());
        }
        auto promise = self->make_response_promise<placement_table>();
        auto summary = std::make_shared<rebalance_report>();
        for (const auto& o : orders) {
          job j;
          j.what = o;
          j.summary = summary;
          self->state.queue.push_back(std::move(j));
        }
        job stop{job::stop, {}, promise, {}, summary};
        stop.node = name;
        self->state.queue.push_back(std::move(stop));
        run_next(self);
        return promise;
      },
      [self](heartbeat_atom) {
        check_liveness(self);
        self->delayed_send(self, self->state.beat, heartbeat_atom_v);
      },
      [self](status_atom) { return self->state.core->status(); },
      [self](placement_atom) { return self->state.core->table(); },
      [self](placement_atom, report_atom) { return self->state.core->report(); },
      [self](rebalance_atom, const operator_proof& proof) -> caf::result<rebalance_report> {
        if (auto why = order_refusal(self->state.keys, proof, rebalance_text()); !why.empty())
          return order_error(why);
        auto promise = self->make_response_promise<rebalance_report>();
        queue_rebalance(self, promise);
        return promise;
      },
      [self](retire_atom) { retire_on_host(self); },
      [self](tick_atom) {
        if (!self->state.busy && self->state.queue.empty()) queue_rebalance(self, {});
        self->delayed_send(self, period(self->state.settings), tick_atom_v);
      },
      [self](move_atom, const move_order& order,
             const operator_proof& proof) -> caf::result<placement_table> {
        if (auto why = order_refusal(self->state.keys, proof, order_text(order)); !why.empty())
          return order_error(why);
        auto promise = self->make_response_promise<placement_table>();
        job j;
        j.what = order;
        j.order_done = promise;
        self->state.queue.push_back(std::move(j));
        run_next(self);
        return promise;
      },
  };
}

}  // namespace

coordinator_actor spawn_coordinator(caf::actor_system& system, const cluster_config& cluster,
                                    placement_table table, coordinator_model model) {
  return system.spawn(coordinator_fn, cluster, std::move(table), std::move(model));
}

std::string error_text(caf::actor_system& system, const caf::error& e) {
  if (e.context().match_elements<std::string>()) return e.context().get_as<std::string>(0);
  return system.render(e);
}

}  // namespace xmesh::actors
