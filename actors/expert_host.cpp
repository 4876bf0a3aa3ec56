#include "actors/expert_host.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>

#include "actors/expert_fetch.hpp"
#include "actors/expert_queue.hpp"
#include "kernels/expert_ffn.hpp"
#include "model/resident_expert.hpp"
#include "transport/frame.hpp"

namespace xmesh::actors {

namespace {
using clock_type = std::chrono::steady_clock;
}  // namespace

uint64_t expert_checksum(const kernels::expert_weights& w) {
  return transport::checksum_of_parts(model::regions_of(w));
}

model::expert_errc to_expert_errc(host_errc e) {
  switch (e) {
    case host_errc::not_hosted:
      return model::expert_errc::not_hosted;
    case host_errc::expert_failed:
      return model::expert_errc::expert_failed;
    case host_errc::bad_frame:
      break;
  }
  return model::expert_errc::bad_frame;
}

expert_host::expert_host(caf::actor_system& system, const model::loaded_model& model,
                         std::string node_name)
    : system_(system), model_(model), node_name_(std::move(node_name)) {
  const auto& c = model.config;
  queues_.resize(c.num_layers * c.num_experts);
  actors_.resize(queues_.size());
}

expert_host::~expert_host() { stop(); }

void expert_host::check_loadable(int64_t layer, int64_t expert) const {
  const auto& c = model_.config;
  const std::string what =
      "expert " + std::to_string(expert) + " of layer " + std::to_string(layer);
  if (layer < 0 || layer >= c.num_layers || expert < 0 || expert >= c.num_experts)
    throw std::runtime_error(what + " is out of range");
  if (!model_.weights.layers[layer].moe)
    throw std::runtime_error("layer " + std::to_string(layer) + " has no experts");
  if (hosts(layer, expert)) throw std::runtime_error(node_name_ + " already hosts " + what);
}

expert_loaded expert_host::load(int64_t layer, int64_t expert, int64_t bytes_per_s,
                                uint64_t checksum) {
  check_loadable(layer, expert);
  if (!model_.weights.holds(layer, expert))
    throw std::runtime_error("expert " + std::to_string(expert) + " of layer " +
                             std::to_string(layer) + " is not in " + node_name_ +
                             "'s partial copy of the model (add it with expert_source: peer)");
  auto start = clock_type::now();
  const auto& src = model_.weights.layers[layer].experts[expert];
  if (store_) {  // the store reads it when a batch needs it
    store_->drop_peer_source(layer, expert);
    if (checksum != 0 && expert_checksum(src) != checksum)
      throw std::runtime_error(
          "expert " + std::to_string(expert) + " of layer " + std::to_string(layer) + " in " +
          node_name_ + "'s model files has checksum " + checksum_hex(expert_checksum(src)) +
          ", the coordinator's copy " + checksum_hex(checksum) + "; not served");
    return install(layer, expert, nullptr, "local files (stored)", start);
  }
  auto r = model::copy_expert(src, bytes_per_s);
  for (auto region : model::regions_of(src))
    model::release_source_pages(region.data(), static_cast<int64_t>(region.size()));
  if (checksum != 0 && expert_checksum(r->weights) != checksum)
    throw std::runtime_error(
        "expert " + std::to_string(expert) + " of layer " + std::to_string(layer) + " in " +
        node_name_ + "'s model files has checksum " + checksum_hex(expert_checksum(r->weights)) +
        ", the coordinator's copy " + checksum_hex(checksum) + "; nothing loaded");
  return install(layer, expert, std::move(r), "local files", start);
}

expert_loaded expert_host::load_from_peer(int64_t layer, int64_t expert,
                                          std::shared_ptr<transport::channel> peer,
                                          const std::string& peer_name, uint64_t checksum,
                                          int64_t bytes_per_s) {
  check_loadable(layer, expert);
  auto start = clock_type::now();
  const auto& layout = model_.weights.layers[layer].experts[expert];
  const int64_t max_expert = model_.config.num_experts - 1;
  if (store_) {  // the store reads it from the peer when a batch needs it
    store_->source_from_peer(layer, expert, peer_name, checksum,
                             [peer, peer_name, &layout, layer, expert, max_expert](int64_t rate) {
                               return fetch_expert(*peer, peer_name, layout, layer, expert,
                                                   max_expert, 0, rate);
                             });
    return install(layer, expert, nullptr, "peer " + peer_name + " (stored)", start);
  }
  return install(
      layer, expert,
      fetch_expert(*peer, peer_name, layout, layer, expert, max_expert, checksum, bytes_per_s),
      "peer " + peer_name, start);
}

expert_loaded expert_host::install(int64_t layer, int64_t expert,
                                   std::shared_ptr<model::resident_weights> resident,
                                   std::string source, clock_type::time_point start) {
  const auto& c = model_.config;
  auto q = std::make_shared<expert_queue>();
  q->resident = std::move(resident);
  q->store = q->resident ? nullptr : store_.get();
  q->low_store = store_.get();
  q->layer = layer;
  q->expert = expert;
  q->rows = &rows_;
  q->compute_ns = &compute_ns_;
  q->metrics = metrics_;
  q->role = compute_;
  if (q->resident) {  // warm: one row through the kernels touches every weight once
    std::vector<float> x(c.hidden, 0.0f), y(c.hidden);
    kernels::expert_job job{&q->resident->weights, x.data(), 1, y.data()};
    kernels::run_experts({&job, 1}, q->pool);
  }
  auto actor = system_.spawn([q](caf::event_based_actor* self) -> caf::behavior {
    return {
        [q](run_atom) { q->run(); },
        [q, self](retire_atom) {
          q->run();  // what was queued before the retirement
          std::function<void()> done;
          {
            std::lock_guard lock(q->mutex);
            done = std::move(q->on_retired);
          }
          self->quit();
          if (done) done();
        },
    };
  });
  const int64_t slot = layer * c.num_experts + expert;
  const int64_t bytes = q->resident ? q->resident->bytes : 0;
  {
    std::unique_lock lock(mutex_);
    if (queues_[slot]) throw std::runtime_error(node_name_ + " loaded that expert twice");
    queues_[slot] = std::move(q);
    actors_[slot] = std::move(actor);
  }
  resident_bytes_ += bytes;
  return {bytes, std::chrono::duration<double>(clock_type::now() - start).count(),
          std::move(source)};
}

void expert_host::retire(int64_t layer, int64_t expert, std::function<void()> done) {
  const auto& c = model_.config;
  if (!hosts(layer, expert))
    throw std::runtime_error(node_name_ + " does not host expert " + std::to_string(expert) +
                             " of layer " + std::to_string(layer));
  const int64_t slot = layer * c.num_experts + expert;
  if (store_) store_->drop_peer_source(layer, expert);  // a later replica names its own source
  std::shared_ptr<expert_queue> q;
  caf::actor actor;
  {
    // NOTE: frames push and wake their actor under the shared lock, so once this exclusive
    // section ends, every wake-up for this replica is already in its mailbox ahead of the
    // retirement below, and no new run can arrive.
    std::unique_lock lock(mutex_);
    q = std::move(queues_[slot]);
    actor = std::move(actors_[slot]);
  }
  const int64_t bytes = q->resident ? q->resident->bytes : 0;
  {
    std::lock_guard lock(q->mutex);
    q->on_retired = [this, bytes, done = std::move(done)] {
      resident_bytes_ -= bytes;
      done();
    };
  }
  caf::anon_send(actor, retire_atom_v);
}

bool expert_host::hosts(int64_t layer, int64_t expert) const {
  const auto& c = model_.config;
  if (layer < 0 || layer >= c.num_layers || expert < 0 || expert >= c.num_experts) return false;
  std::shared_lock lock(mutex_);
  return queues_[layer * c.num_experts + expert] != nullptr;
}

std::vector<int64_t> expert_host::resident() const {
  std::shared_lock lock(mutex_);
  std::vector<int64_t> out;
  for (size_t s = 0; s < queues_.size(); ++s)
    if (queues_[s]) out.push_back(static_cast<int64_t>(s));
  return out;
}

bool expert_host::compute_here(int64_t layer, const float* x, const int32_t* ids, int32_t k,
                               std::span<const int32_t> slots, float* y, int64_t hidden,
                               kernels::thread_pool& pool) {
  const auto& c = model_.config;
  std::map<int32_t, std::shared_ptr<expert_queue>> held;  // keeps the weights alive meanwhile
  {
    std::shared_lock lock(mutex_);
    for (int32_t s : slots) {
      auto& q = held[ids[s]];
      if (!q) q = queues_[layer * c.num_experts + ids[s]];
      if (!q || q->store) return false;  // (a node with a store has no head role)
    }
  }
  auto start = clock_type::now();
  model::compute_expert_slots(
      slots, x, ids, k, hidden, [&](int32_t e) { return &held.at(e)->resident->weights; }, pool, y);
  rows_ += static_cast<uint64_t>(slots.size());
  compute_ns_ += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - start).count());
  return true;
}

host_speed expert_host::speed() const {
  return {rows_.load(), static_cast<double>(compute_ns_.load()) * 1e-9,
          resident_bytes_.load() + (store_ ? store_->resident_bytes() : 0), served_.load(),
          service_seconds()};
}

void expert_host::reject(host_errc code, std::string_view label, const std::string& reason,
                         const std::shared_ptr<transport::reply_handle>& reply, uint64_t batch_id) {
  if (code != host_errc::not_hosted) {
    if (metrics_) metrics_->frames_dropped(label).Increment();
    uint64_t n = dropped_.fetch_add(1) + 1;
    if (n <= 10 || n % 1000 == 0)
      std::fprintf(stderr, "xmesh node %s: dropped frame: %s (%llu dropped so far)\n",
                   node_name_.c_str(), reason.c_str(), static_cast<unsigned long long>(n));
  }
  transport::frame_header h;
  h.batch_id = batch_id;
  h.flags = static_cast<uint32_t>(code);
  reply->send(transport::encode_error_frame(h, reason));
}

void expert_host::on_message(transport::bytes message,
                             std::shared_ptr<transport::reply_handle> reply) {
  try {
    serve(std::move(message), reply);
  } catch (const std::exception& e) {  // never let network input take the node down
    reject(host_errc::bad_frame, "internal", std::string("cannot serve frame: ") + e.what(), reply);
  }
}

// Handles stay valid (the receive thread may still read them); messages to an actor that has
// exited are dropped by CAF.
void expert_host::stop() {
  std::vector<caf::actor> actors;
  {
    std::shared_lock lock(mutex_);
    actors = actors_;
  }
  caf::scoped_actor self{system_};
  for (const auto& a : actors)
    if (a) {
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      self->wait_for(a);
    }
}

// A peer loading a replica asks for its weights: they go out as stored, in one weights frame.
void expert_host::serve_fetch(const transport::frame_header& h,
                              const std::shared_ptr<transport::reply_handle>& reply) {
  const auto& c = model_.config;
  std::shared_ptr<expert_queue> q;
  if (h.layer < c.num_layers) {
    std::shared_lock lock(mutex_);
    q = queues_[h.layer * c.num_experts + h.expert];
  }
  // A replica it serves, or else its own files' copy (a store's peer may retire the replica).
  const bool in_files = h.layer < c.num_layers && h.expert < c.num_experts &&
                        model_.weights.layers[h.layer].moe &&
                        model_.weights.holds(h.layer, h.expert);
  if (!q && !in_files)
    return reject(host_errc::not_hosted, "not_hosted",
                  "expert " + std::to_string(h.expert) + " of layer " + std::to_string(h.layer) +
                      " is not hosted on " + node_name_,
                  reply, h.batch_id);
  // NOTE: this runs on the transport's thread, which must never wait for a read (a store whose
  // slow tier is a peer needs this very thread for the peer's answer): a stored expert is
  // served from the node's files, or while it is resident, or not at all.
  const bool stored_only = q && q->store && !in_files;
  std::optional<node_store::lease> held =
      stored_only ? q->store->try_acquire(q->layer, q->expert) : std::nullopt;
  if (stored_only && !held)
    return reject(host_errc::not_hosted, "not_hosted",
                  "expert " + std::to_string(h.expert) + " of layer " + std::to_string(h.layer) +
                      " is not resident on " + node_name_ + " (its store reads it from a peer)",
                  reply, h.batch_id);
  const auto& w = held               ? held->weights()
                  : q && q->resident ? q->resident->weights
                                     : model_.weights.layers[h.layer].experts[h.expert];
  std::vector<std::byte> all;
  all.reserve(static_cast<size_t>(w.bytes()));
  for (auto region : model::regions_of(w)) all.insert(all.end(), region.begin(), region.end());
  // Fault injection for tests: a peer whose copy went bad streams it with a valid frame checksum.
  // (XMESH_FAULT_CORRUPT_WEIGHTS names the node that does it.)
  static const char* corrupt = std::getenv("XMESH_FAULT_CORRUPT_WEIGHTS");
  if (corrupt != nullptr && node_name_ == corrupt && !all.empty())
    all[all.size() / 2] ^= std::byte{1};
  transport::frame_header out = h;
  out.kind = transport::frame_kind::weights;
  reply->send(transport::encode_blob_frame(out, all));
}

void expert_host::serve(transport::bytes message,
                        const std::shared_ptr<transport::reply_handle>& reply) {
  const auto& c = model_.config;
  transport::frame_limits limits;
  limits.max_expert = static_cast<uint32_t>(c.num_experts - 1);
  limits.expected_hidden = static_cast<uint32_t>(c.hidden);
  limits.max_rows = max_pairs_per_frame(c.hidden);
  limits.max_payload_bytes = max_dispatch_payload(c);
  auto frame = std::make_shared<pending_frame>();
  frame->message = std::move(message);
  if (metrics_) metrics_->bytes_received().Increment(static_cast<double>(frame->message.size()));
  auto d = transport::decode_frame(frame->message, limits);
  if (!d)
    return reject(host_errc::bad_frame, transport::to_string(d.error),
                  std::string(transport::to_string(d.error)) + ": " + d.reason, reply);
  const auto& h = d.frame.header;
  if (h.kind == transport::frame_kind::fetch) return serve_fetch(h, reply);
  if (h.kind != transport::frame_kind::dispatch && h.kind != transport::frame_kind::prefetch)
    return reject(host_errc::bad_frame, "not_dispatch", "not a dispatch frame", reply, h.batch_id);
  if (h.layer >= c.num_layers || !model_.weights.layers[h.layer].moe)
    return reject(host_errc::bad_frame, "dense_layer",
                  "layer " + std::to_string(h.layer) + " has no experts", reply, h.batch_id);
  if (h.kind == transport::frame_kind::prefetch) {
    // Loads start in the background; experts it does not host (any more) are left alone.
    if (store_)
      for (int32_t e : d.frame.expert_of_pair)
        if (hosts(h.layer, e)) {
          ++store_->prefetched;
          store_->warm(h.layer, e);
        }
    auto ack = h;
    ack.kind = transport::frame_kind::result;
    return reply->send(transport::frame_builder(ack, {}, {}).seal());
  }
  // Runs of consecutive pairs with the same expert and precision (routers send them sorted by
  // expert).
  std::vector<std::pair<int32_t, frame_run>> runs;
  for (uint32_t r = 0; r < h.num_pairs; ++r) {
    int32_t e = d.frame.expert_of_pair[r];
    const bool low = d.frame.low_precision(r);
    if (!runs.empty() && runs.back().first == e && runs.back().second.low == low)
      ++runs.back().second.count;
    else
      runs.push_back({e, frame_run{frame, r, 1, low}});
  }
  if (!d.frame.precision_of_pair.empty() && !(store_ && store_->has_fallback()) &&
      std::any_of(runs.begin(), runs.end(), [](const auto& r) { return r.second.low; }))
    return reject(host_errc::bad_frame, "no_fallback",
                  node_name_ + " keeps no low-precision copy (its store has no fallback=)", reply,
                  h.batch_id);
  frame->view = d.frame;
  auto rh = h;
  rh.kind = transport::frame_kind::result;
  rh.num_rows = h.num_pairs;  // one output row per pair
  frame->reply_frame.emplace(rh, d.frame.expert_of_pair, d.frame.token_of_pair);
  frame->reply = reply;
  frame->served = &served_;
  frame->service_ns = &service_ns_;
  if (metrics_) frame->served_metric = &metrics_->frames_served();
  if (runs.empty()) return frame->finish();
  frame->remaining = static_cast<int>(runs.size());
  std::shared_lock lock(mutex_);  // see retire(): lookups, pushes and wake-ups under this lock
  for (const auto& [e, p] : runs)
    if (!queues_[h.layer * c.num_experts + e]) {
      lock.unlock();
      return reject(host_errc::not_hosted, "not_hosted",
                    "expert " + std::to_string(e) + " of layer " + std::to_string(h.layer) +
                        " is not hosted on " + node_name_,
                    reply, h.batch_id);
    }
  if (share_if_decode(*frame, runs,
                      std::span(queues_).subspan(h.layer * c.num_experts, c.num_experts)))
    ++shared_;
  for (auto& [e, p] : runs) {
    int64_t slot = h.layer * c.num_experts + e;
    if (queues_[slot]->push(std::move(p))) caf::anon_send(actors_[slot], run_atom_v);
  }
}

}  // namespace xmesh::actors
