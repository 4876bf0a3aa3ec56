#include "actors/node.hpp"

#include <algorithm>
#include <atomic>
#include <caf/io/all.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>

#include "actors/coordinator_actor.hpp"
#include "actors/node_actors.hpp"
#include "actors/system.hpp"
#include "model/expert_shard.hpp"
#include "model/generator.hpp"
#include "transport/factory.hpp"
#include "transport/gate/library_accepts.hpp"
#include "transport/gate/tls.hpp"

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

std::vector<int64_t> moe_layers(const model::loaded_model& m) {
  std::vector<int64_t> out;
  for (size_t l = 0; l < m.weights.layers.size(); ++l)
    if (m.weights.layers[l].moe) out.push_back(static_cast<int64_t>(l));
  return out;
}

// An authenticated cluster's data key (written by xmesh cluster keygen).
std::optional<transport::data_key> data_plane_key(const cluster_config& c) {
  if (!c.security.authenticated()) return std::nullopt;
  return transport::read_data_key(c.security.keys);
}

// Counts and logs (the first ten, then every thousandth) messages the seal dropped.
transport::drop_callback count_drops(const std::string& node, node_metrics* metrics) {
  auto dropped = std::make_shared<std::atomic<uint64_t>>(0);
  return [=](transport::seal_drop why) {
    const bool replayed = why == transport::seal_drop::replayed;
    if (metrics) metrics->frames_dropped(replayed ? "replayed" : "unauthenticated").Increment();
    const uint64_t n = dropped->fetch_add(1) + 1;
    if (n <= 10 || n % 1000 == 0)
      std::fprintf(stderr, "xmesh node %s: dropped data-plane message: %s (%llu dropped so far)\n",
                   node.c_str(),
                   replayed ? "opened before (a replayed message)"
                            : "not sealed with this cluster's data key",
                   static_cast<unsigned long long>(n));
  };
}

}  // namespace

node_runtime::node_runtime(caf::actor_system& system, cluster_config cluster, std::string name)
    : system_(system), cluster_(std::move(cluster)), self_(cluster_.node(name)) {}

// Tear-down runs strictly inside out: no new requests, running generations finish, expert actors
// stop (they read the weights and reply through the endpoint), then the endpoint (whose receive
// thread calls into the expert host and the router), then router and host; the model goes last.
node_runtime::~node_runtime() {
  stopping_ = true;
  caf::scoped_actor self{system_};
  for (auto* a : {&membership_, &actor_})
    if (*a) {
      caf::anon_send_exit(*a, caf::exit_reason::user_shutdown);
      self->wait_for(*a);
    }
  if (coordinator_) {
    caf::anon_send_exit(coordinator_, caf::exit_reason::user_shutdown);
    self->wait_for(coordinator_);
  }
  {
    std::unique_lock lock(mutex_);
    drained_.wait_for(lock, 30s, [&] { return in_flight_ == 0; });
  }
  if (host_) host_->stop();
  endpoint_.reset();
  router_.reset();
  host_.reset();
}

// The largest control message a peer may send this node, from the model's shapes: a prompt of
// the whole context, per-expert tables (loads, placements), and room for the rest.
transport::gate_limits gate_limits_for(const model::model_config& m) {
  transport::gate_limits limits;
  limits.max_message_bytes = static_cast<uint32_t>(std::min<int64_t>(
      (8 << 20) + 16 * m.max_positions + 256 * m.num_layers * m.num_experts, int64_t{1} << 30));
  return limits;
}

model::generation_options options_of(const generate_request& r) {
  return {.max_new_tokens = r.max_new_tokens,
          .sampling = {r.temperature, r.top_k, r.top_p, r.seed},
          .keep_all_logits = r.keep_all_logits,
          .stop_at_eos = r.stop_at_eos};
}

void fill_generated(generate_reply& reply, model::generation_result r) {
  reply.generated = std::move(r.generated);
  const auto* logits = reinterpret_cast<const uint8_t*>(r.logits.data());
  reply.logits.assign(logits, logits + r.logits.size() * sizeof(float));
  reply.positions = r.positions;
  reply.prefill_seconds = r.prefill_seconds;
  reply.decode_seconds = r.decode_seconds;
  reply.decode_steps = r.decode_steps;
  reply.token_seconds = std::move(r.token_seconds);
}

void node_runtime::follow_stores() {
  const bool routing_section = routing_.enabled;
  std::string first;  // the first store with a fallback: the head's cache follows it
  for (const auto& n : cluster_.nodes) {
    if (n.store.empty()) continue;
    model::store_options store;
    try {
      store = model::parse_store_options(n.store, model_->config);
    } catch (const std::exception& e) {
      throw std::runtime_error("node '" + n.name + "': store: " + e.what());
    }
    if (store.prefetch) prefetching_.insert(n.name);
    if (store.fallback.empty()) continue;
    // The same rule as the single-process store's: a pair computes with the fallback when its
    // expert was not in the sequence's logical cache before its token.
    if (!routing_.enabled)
      routing_ = store.cache;  // exact top-k through the policy path: it only tracks the cache
    if (!routing_.same_cache(store.cache))
      throw std::runtime_error(
          (routing_section ? "node '" + self_.name + "': routing: and node '" + n.name + "' store"
                           : "node '" + first + "' store and node '" + n.name + "' store") +
          ": give both the same cache, cache_fraction, decay and load_rank (the store's misses "
          "compute with its fallback, as the head's logical cache decides)");
    if (first.empty()) first = n.name;
    routing_.mark_misses = true;
  }
}

void node_runtime::start() {
  model_ = std::make_unique<model::loaded_model>(model::load_model(self_.model_dir(cluster_)));
  model_identity_ = model::model_identity(self_.model_dir(cluster_));
  if (!self_.store.empty()) {
    try {
      store_options_ = model::parse_store_options(self_.store, model_->config);
    } catch (const std::exception& e) {
      throw std::runtime_error("node '" + self_.name + "': store: " + e.what());
    }
  }
  if (self_.has(role::head)) {
    try {
      routing_ = model::parse_routing_options(cluster_.routing, model_->config);
    } catch (const std::exception& e) {
      throw std::runtime_error("node '" + self_.name + "': " + e.what());
    }
    follow_stores();
  }
  if (model_->weights.partial && (self_.has(role::head) || self_.has(role::coordinator)))
    throw std::runtime_error("node '" + self_.name + "': " + self_.model_dir(cluster_).string() +
                             " holds only some experts (" + model::expert_shard_file +
                             "): such a node can only have the experts role");
  if (self_.metrics_port >= 0) {
    metrics_ = std::make_unique<node_metrics>(self_.name, cluster_.transport,
                                              cluster_.metrics.expert_series);
    try {
      metrics_server_ = std::make_unique<transport::text_server>(
          "xmesh node " + self_.name + " (metrics)", self_.host,
          static_cast<uint16_t>(self_.metrics_port), "/metrics",
          [m = metrics_.get()] { return m->text(); });
    } catch (const std::exception& e) {
      throw std::runtime_error("node '" + self_.name + "': cannot serve metrics: " + e.what());
    }
    std::fprintf(stderr, "xmesh node %s: metrics on http://%s:%u/metrics\n", self_.name.c_str(),
                 self_.host.c_str(), metrics_port());
  }
  if (self_.has(role::coordinator)) {
    auto table = make_placement(cluster_, model_->config, expert_bytes(*model_), 1);
    coordinator_ = spawn_coordinator(system_, cluster_, std::move(table),
                                     {expert_bytes(*model_), moe_layers(*model_),
                                      [m = model_.get()](int64_t l, int64_t e) {
                                        return expert_checksum(m->weights.layers[l].experts[e]);
                                      },
                                      model_identity_, metrics_.get()});
  }
  transport::set_library_accept_caps({static_cast<int>(cluster_.data_connections.per_host),
                                      static_cast<int>(cluster_.data_connections.total)});
  try {
    gate_ = make_gate(cluster_, self_.name, gate_limits_for(model_->config));
  } catch (const std::exception& e) {
    throw std::runtime_error("node '" + self_.name + "': " + e.what());
  }
  try {
    endpoint_ = transport::make_endpoint(cluster_.transport, data_plane_key(cluster_),
                                         count_drops(self_.name, metrics_.get()));
  } catch (const std::exception& e) {
    throw std::runtime_error("node '" + self_.name + "': " + e.what());
  }
  actor_ = system_.spawn(node_actor, this);
  if (self_.control_port != 0) {
    try {
      publish_behind(system_, *gate_, actor_, self_.host, self_.control_port);
    } catch (const std::exception& e) {
      throw std::runtime_error("node '" + self_.name + "': " + e.what());
    }
  }
  caf::actor coordinator = find_coordinator();
  trust_coordinator(coordinator);
  // Experts need their assignment to know what to load before they listen; registration (with
  // what they hold; it marks the node ready) answers with the live table, which heads route with.
  if (self_.has(role::experts))
    start_experts(ask<placement_table>(system_, coordinator, 10s, "placement from the coordinator",
                                       placement_atom_v, self_.name));
  if (self_.has(role::head)) {
    router_options o;
    auto me = std::find_if(cluster_.nodes.begin(), cluster_.nodes.end(),
                           [&](const node_config& n) { return n.name == self_.name; });
    o.head_id = static_cast<uint16_t>(me - cluster_.nodes.begin());
    o.window_s = static_cast<int64_t>(cluster_.rebalance.window_s);
    auto timeout = static_cast<int>(std::min<int64_t>(connect_timeout().count(), 10000));
    router_ = std::make_unique<router_service>(
        model_->config.hidden, o,
        [this, timeout](const std::string& address) {
          return endpoint_->connect(address, timeout);
        },
        make_replica_policy(cluster_.replica_choice));
  }
  if (router_ && host_) router_->set_local(host_.get(), self_.name);
  if (router_) router_->set_fallback(&model_->weights);
  if (router_) router_->set_prefetching(prefetching_);
  if (router_ && cluster_.store_misses_on_head) {
    std::map<std::string, std::unique_ptr<model::expert_cache_model>> mirrors;
    for (const auto& n : cluster_.nodes)
      if (!n.store.empty())
        mirrors[n.name] = std::make_unique<model::expert_cache_model>(
            model_->config, model::parse_store_options(n.store, model_->config).cache);
    router_->mirror_stores(std::move(mirrors));
  }
  if (router_) router_->set_metrics(metrics_.get());
  set_placement(ask<placement_table>(system_, coordinator, 10s, "registration with the coordinator",
                                     register_atom_v, info()));
  std::optional<node_config> remote;
  if (!self_.has(role::coordinator)) remote = cluster_.coordinator();
  membership_ = system_.spawn(
      membership_actor, this, coordinator, remote,
      std::chrono::milliseconds(static_cast<int64_t>(cluster_.heartbeat.period_s * 1000)));
  ready_ = true;
}

void node_runtime::trust_coordinator(const caf::actor& coordinator) {
  std::lock_guard lock(coordinator_node_mutex_);
  coordinator_node_ = coordinator.node();
}

bool node_runtime::from_coordinator(const caf::strong_actor_ptr& sender) const {
  std::lock_guard lock(coordinator_node_mutex_);
  return sender != nullptr && sender->node() == coordinator_node_;
}

caf::actor node_runtime::find_coordinator() {
  if (self_.has(role::coordinator)) return actor_;
  try {
    return reach_node(system_, *gate_, cluster_.coordinator(), connect_timeout(), "coordinator");
  } catch (const std::exception& e) {
    throw std::runtime_error("node '" + self_.name + "': " + e.what());
  }
}

void node_runtime::start_experts(const placement_table& table) {
  check_placement(table, model_->config);
  host_ = std::make_unique<expert_host>(system_, *model_, self_.name);
  host_->set_metrics(metrics_.get());
  host_->set_compute_role({self_.compute_nice, self_.pin_compute});
  if (store_options_) host_->set_store(std::make_unique<node_store>(*model_, *store_options_));
  for (int64_t slot : hosted_experts(table, self_.name)) {
    int64_t layer = slot / table.num_experts, expert = slot % table.num_experts;
    if (model_->weights.layers[layer].moe) (void)host_->load(layer, expert);
  }
  endpoint_->limit_requests(
      std::min<uint64_t>(expert_host::max_request_bytes(model_->config),
                         transport::max_message_bytes - transport::sealer::trailer_bytes));
  endpoint_->listen(
      self_.data_address(cluster_.transport),
      [host = host_.get()](transport::bytes m, std::shared_ptr<transport::reply_handle> r) {
        host->on_message(std::move(m), std::move(r));
      });
}

expert_loaded node_runtime::load_replica(int64_t layer, int64_t expert, int64_t bytes_per_s,
                                         const std::string& peer, const std::string& peer_address,
                                         uint64_t checksum) {
  if (!host_) throw std::runtime_error("node '" + self_.name + "' has no experts role");
  auto report = [&](const expert_loaded& l) {
    std::fprintf(stderr,
                 "xmesh node %s: loaded expert %lld of layer %lld from %s (%lld bytes, %.3f s)\n",
                 self_.name.c_str(), static_cast<long long>(expert), static_cast<long long>(layer),
                 l.source.c_str(), static_cast<long long>(l.bytes), l.seconds);
    return l;
  };
  // A node with its own (e.g. quantized) copy of the model holds other bytes than the
  // coordinator's checksum describes; its copy was checked as the same model at start.
  if (peer.empty())
    return report(host_->load(layer, expert, bytes_per_s, self_.model.empty() ? checksum : 0));
  auto timeout = static_cast<int>(std::min<int64_t>(connect_timeout().count(), 10000));
  // A store keeps reading from the peer: one channel per peer for all its experts (the first
  // one opened is kept; loads run concurrently, so the lock covers only the map).
  std::shared_ptr<transport::channel> channel;
  if (host_->store()) {
    std::lock_guard lock(peer_channels_mutex_);
    if (auto at = peer_channels_.find(peer_address); at != peer_channels_.end())
      channel = at->second;
  }
  try {
    if (!channel) channel = endpoint_->connect(peer_address, timeout);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot reach peer '" + peer + "': " + e.what());
  }
  if (host_->store()) {
    std::lock_guard lock(peer_channels_mutex_);
    channel = peer_channels_.emplace(peer_address, channel).first->second;
  }
  return report(host_->load_from_peer(layer, expert, channel, peer, checksum, bytes_per_s));
}

void node_runtime::set_placement(placement_table table) {
  check_placement(table, model_->config);
  uint64_t seen = version_.load();
  while (table.version > seen && !version_.compare_exchange_weak(seen, table.version)) {
  }
  if (metrics_) metrics_->set_placement_version(version_.load());
  if (router_) router_->set_table(std::make_shared<const placement_table>(std::move(table)));
}

void node_runtime::refresh_metrics() {
  if (metrics_ && host_)
    metrics_->set_memory(host_->speed().resident_bytes, self_.memory_budget_bytes);
  if (metrics_ && gate_) metrics_->set_control(gate_->counters());
  if (metrics_) metrics_->set_data_connections(transport::library_accept_counts_now());
  if (metrics_ && host_ && host_->store()) metrics_->set_store(*host_->store());
}

uint16_t node_runtime::metrics_port() const {
  return metrics_server_ ? metrics_server_->port() : 0;
}

node_info node_runtime::info() const {
  // An expert node's data address is what its endpoint listens on (for UCX, the worker address
  // peers create endpoints from; a restart gives a new one).
  std::string data = host_ ? endpoint_->listen_address() : std::string();
  if (data.empty()) data = self_.data_address(cluster_.transport);
  node_info i{self_.name, role_names(self_), data, actor_};
  i.model = model_identity_;
  if (host_) i.resident = host_->resident();
  if (host_ && host_->store()) i.fallback = host_->store()->fallback_checksum();
  i.version = version_.load();
  i.memory_budget_bytes = self_.memory_budget_bytes;
  if (cluster_.security.authenticated()) {
    auto claim = transport::sign_claim(
        transport::tls_identity_in(cluster_.security.keys, self_.name), registration_text(i));
    i.certificate = std::move(claim.certificate_pem);
    i.signature = std::move(claim.signature);
  }
  return i;
}

generate_reply node_runtime::run_generation(const generate_request& req) {
  generate_reply reply;
  const auto started = std::chrono::steady_clock::now();
  if (metrics_) metrics_->request_started();
  auto failed = [&](request_failure why, std::string text) {
    if (metrics_) metrics_->request_failed(why);
    reply.error = std::move(text);
    return reply;
  };
  if (!req.model.empty() && !model::same_model(req.model, model_identity_))
    return failed(request_failure::model_mismatch, "the cluster serves model " + model_identity_ +
                                                       " but the request is for " + req.model +
                                                       " (--model)");
  if (!ready_ || stopping_ || !router_)
    return failed(request_failure::not_ready, "node '" + self_.name + "' is " +
                                                  (stopping_  ? "stopping"
                                                   : !router_ ? "not a head"
                                                              : "still starting"));
  auto working = busy();
  try {
    kernels::thread_pool pool(self_.threads);
    counted_backend experts(*router_, pool);
    model::transformer net(model_->config, model_->weights, pool, experts);
    net.set_routing_policy(routing_);
    if (!prefetching_.empty())  // decode steps only, as the single-process store prefetches
      net.set_moe_observer([&](int64_t l, const float* x, int64_t n, model::expert_cache_model* c) {
        if (n != 1) return;
        auto p = model::predict_next_experts(model_->config, model_->weights, l, x, pool);
        if (p.layer < 0) return;
        if (c) c->touch(p.layer, p.experts.data(), static_cast<int64_t>(p.experts.size()));
        router_->prefetch(p.layer, p.experts);
        experts.predicted(p.layer, p.experts);
      });
    fill_generated(reply, model::generate(net, req.prompt, options_of(req)));
    reply.dispatches = experts.dispatches();
    reply.dispatch_seconds = experts.dispatch_seconds();
    if (metrics_)
      metrics_->request_done(
          static_cast<int64_t>(req.prompt.size()), reply.token_seconds,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  } catch (const model::expert_error& e) {
    failed(request_failure::expert_node, e.what());
  } catch (const std::exception& e) {
    failed(request_failure::other, e.what());
  }
  return reply;
}

std::shared_ptr<void> node_runtime::busy() {
  {
    std::lock_guard lock(mutex_);
    ++in_flight_;
  }
  return std::shared_ptr<void>(nullptr, [this](void*) {
    std::lock_guard lock(mutex_);
    if (--in_flight_ == 0) drained_.notify_all();
  });
}

node_stats node_runtime::stats() const {
  node_stats s{self_.name};
  if (host_) {
    s.frames_served = host_->frames_served();
    s.frames_dropped = host_->frames_dropped();
    s.frames_shared = host_->frames_shared();
    auto speed = host_->speed();
    s.expert_rows = speed.rows;
    s.expert_seconds = speed.compute_s;
    s.resident_bytes = speed.resident_bytes;
    s.service_seconds = host_->service_seconds();
  }
  if (router_) {
    auto t = router_->times();
    s.frames_sent = t.frames;
    s.encode_seconds = t.encode_s;
    s.decode_seconds = t.decode_s;
    s.round_trip_seconds = t.round_trip_s;
  }
  return s;
}

}  // namespace xmesh::actors
