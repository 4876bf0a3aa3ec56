#include "actors/node.hpp"

#include <algorithm>
#include <caf/io/all.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>

#include "actors/router.hpp"
#include "actors/system.hpp"
#include "model/generator.hpp"

namespace xmesh::actors {

namespace {

using namespace std::chrono_literals;

std::vector<std::string> role_names(const node_config& n) {
  std::vector<std::string> out;
  for (auto r : n.roles)
    out.push_back(r == role::coordinator ? "coordinator" : r == role::head ? "head" : "experts");
  return out;
}

int64_t expert_bytes(const model::loaded_model& m) {
  for (const auto& l : m.weights.layers)
    if (l.moe) return l.experts.front().bytes();
  return 0;
}

// The control-plane face of a node: every role's messages, answered from the runtime.
caf::behavior node_actor(caf::event_based_actor* self, node_runtime* rt) {
  auto not_coordinator = [] { return caf::make_error(caf::sec::unexpected_message); };
  return {
      [=](stats_atom) { return rt->stats(); },
      [=](register_atom, const node_info& info) -> caf::result<placement_table> {
        if (!rt->coordinator()) return not_coordinator();
        rt->coordinator()->register_node(info);
        return rt->coordinator()->table();
      },
      [=](heartbeat_atom, const std::string& name) {
        if (rt->coordinator()) rt->coordinator()->heartbeat(name);
      },
      [=](status_atom) -> caf::result<cluster_status> {
        if (!rt->coordinator()) return not_coordinator();
        return rt->coordinator()->status();
      },
      [=](placement_atom) -> caf::result<placement_table> {
        if (!rt->coordinator()) return not_coordinator();
        return rt->coordinator()->table();
      },
      [=](generate_atom, generate_request& request) {
        // Each request runs on its own thread, so independent requests overlap.
        auto worker = self->spawn<caf::detached>([rt](caf::event_based_actor* w) -> caf::behavior {
          return {[=](generate_atom, const generate_request& r) {
            w->quit();
            return rt->run_generation(r);
          }};
        });
        return self->delegate(worker, generate_atom_v, std::move(request));
      },
  };
}

caf::behavior heartbeat_actor(caf::event_based_actor* self, caf::actor coordinator,
                              std::string name) {
  self->send(self, heartbeat_atom_v);
  return {[=](heartbeat_atom) {
    self->send(coordinator, heartbeat_atom_v, name);
    self->delayed_send(self, 1s, heartbeat_atom_v);
  }};
}

}  // namespace

node_runtime::node_runtime(caf::actor_system& system, cluster_config cluster, std::string name)
    : system_(system), cluster_(std::move(cluster)), self_(cluster_.node(name)) {}

// Tear-down runs strictly inside out: no new requests, running generations finish, expert actors
// stop (they read the weights and reply through the endpoint), then the endpoint (whose receive
// thread calls into the expert host), then the host; the model goes last.
node_runtime::~node_runtime() {
  stopping_ = true;
  caf::scoped_actor self{system_};
  for (auto* a : {&heartbeat_, &actor_})
    if (*a) {
      caf::anon_send_exit(*a, caf::exit_reason::user_shutdown);
      self->wait_for(*a);
    }
  {
    std::unique_lock lock(mutex_);
    drained_.wait_for(lock, 30s, [&] { return in_flight_ == 0; });
  }
  for (const auto& r : routers_) caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  if (host_) host_->stop();
  endpoint_.reset();
  channels_.clear();
  host_.reset();
}

void node_runtime::start() {
  model_ = std::make_unique<model::loaded_model>(model::load_model(cluster_.model));
  if (self_.has(role::coordinator)) {
    auto table = make_placement(cluster_, model_->config, expert_bytes(*model_), 1);
    coordinator_ = std::make_unique<coordinator_state>(cluster_, std::move(table));
  }
  endpoint_ = transport::make_endpoint(cluster_.transport);
  actor_ = system_.spawn(node_actor, this);
  if (self_.control_port != 0) {
    auto port = system_.middleman().publish(actor_, self_.control_port, self_.host.c_str(), true);
    if (!port)
      throw std::runtime_error("node '" + self_.name + "': cannot listen on " + self_.host + ":" +
                               std::to_string(self_.control_port) + ": " +
                               system_.render(port.error()));
  }
  caf::actor coordinator = find_coordinator();
  // Experts need the table to know what to host before they listen; registration (which marks
  // the node ready) answers with the current table, which heads route with.
  if (self_.has(role::experts)) {
    set_placement(ask<placement_table>(system_, coordinator, 10s, "placement from the coordinator",
                                       placement_atom_v));
    start_experts();
  }
  if (self_.has(role::head))
    for (int64_t l = 0; l < model_->config.num_layers; ++l)
      routers_.push_back(system_.spawn(router_actor));
  node_info info{self_.name, role_names(self_), self_.data_address(cluster_.transport)};
  set_placement(ask<placement_table>(system_, coordinator, 10s, "registration with the coordinator",
                                     register_atom_v, info));
  heartbeat_ = system_.spawn(heartbeat_actor, coordinator, self_.name);
  ready_ = true;
}

caf::actor node_runtime::find_coordinator() {
  if (self_.has(role::coordinator)) return actor_;
  try {
    return reach_node(system_, cluster_.coordinator(), connect_timeout(), "coordinator");
  } catch (const std::exception& e) {
    throw std::runtime_error("node '" + self_.name + "': " + e.what());
  }
}

void node_runtime::start_experts() {
  host_ = std::make_unique<expert_host>(system_, *model_, *placement(), self_.name);
  endpoint_->listen(
      self_.data_address(cluster_.transport),
      [host = host_.get()](transport::bytes m, std::shared_ptr<transport::reply_handle> r) {
        host->on_message(std::move(m), std::move(r));
      });
}

void node_runtime::set_placement(placement_table table) {
  check_placement(table, model_->config);
  std::lock_guard lock(mutex_);
  if (placement_ && table.version < placement_->version)
    throw std::runtime_error("placement version " + std::to_string(table.version) +
                             " is older than " + std::to_string(placement_->version));
  placement_ = std::make_shared<const placement_table>(std::move(table));
}

std::shared_ptr<const placement_table> node_runtime::placement() const {
  std::lock_guard lock(mutex_);
  return placement_;
}

std::vector<std::shared_ptr<transport::channel>> node_runtime::channels_for(
    const placement_table& table) {
  std::vector<std::shared_ptr<transport::channel>> out(table.addresses.size());
  {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < out.size(); ++i)
      if (auto it = channels_.find(table.addresses[i]); it != channels_.end()) out[i] = it->second;
  }
  // Connect outside the lock: reaching a dead node may take the whole timeout.
  auto timeout = static_cast<int>(std::min<int64_t>(connect_timeout().count(), 10000));
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i]) continue;
    try {
      out[i] = endpoint_->connect(table.addresses[i], timeout);
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot reach node '" + table.nodes[i] + "': " + e.what());
    }
    std::lock_guard lock(mutex_);
    out[i] = channels_.emplace(table.addresses[i], out[i]).first->second;  // first connection wins
  }
  return out;
}

// After a node failed a request its channel may be dead (peer restarted or gone): drop it so the
// next request connects afresh, and a node that comes back is used again.
void node_runtime::forget_channel(const std::shared_ptr<transport::channel>& broken) {
  std::lock_guard lock(mutex_);
  for (auto it = channels_.begin(); it != channels_.end();)
    it = it->second == broken ? channels_.erase(it) : std::next(it);
}

generate_reply node_runtime::run_generation(const generate_request& req) {
  generate_reply reply;
  if (!ready_ || stopping_) {
    reply.error = "node '" + self_.name + "' is " + (stopping_ ? "stopping" : "still starting");
    return reply;
  }
  {
    std::lock_guard lock(mutex_);
    ++in_flight_;
  }
  std::vector<std::shared_ptr<transport::channel>> channels;
  std::optional<routed_experts> experts;
  try {
    auto table = placement();
    channels = channels_for(*table);
    std::vector<transport::channel*> raw;
    for (const auto& c : channels) raw.push_back(c.get());
    kernels::thread_pool pool(self_.threads);
    experts.emplace(table, raw, routers_, model_->config.hidden);
    model::transformer net(model_->config, model_->weights, pool, *experts);
    model::generation_options o{.max_new_tokens = req.max_new_tokens,
                                .sampling = {req.temperature, req.top_k, req.top_p, req.seed},
                                .keep_all_logits = req.keep_all_logits,
                                .stop_at_eos = req.stop_at_eos};
    auto r = model::generate(net, req.prompt, o);
    reply.generated = r.generated;
    const auto* logits = reinterpret_cast<const uint8_t*>(r.logits.data());
    reply.logits.assign(logits, logits + r.logits.size() * sizeof(float));
    reply.positions = r.positions;
    reply.prefill_seconds = r.prefill_seconds;
    reply.decode_seconds = r.decode_seconds;
    reply.decode_steps = r.decode_steps;
    reply.dispatches = experts->dispatches();
    reply.dispatch_seconds = experts->dispatch_seconds();
  } catch (const std::exception& e) {
    reply.error = e.what();
    if (experts && experts->failed_node() >= 0) forget_channel(channels[experts->failed_node()]);
  }
  std::lock_guard lock(mutex_);
  if (--in_flight_ == 0) drained_.notify_all();
  return reply;
}

node_stats node_runtime::stats() const {
  node_stats s{self_.name, 0, 0};
  if (host_) {
    s.frames_served = host_->frames_served();
    s.frames_dropped = host_->frames_dropped();
  }
  return s;
}

}  // namespace xmesh::actors
