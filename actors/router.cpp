#include "actors/router.hpp"

#include <algorithm>
#include <cstring>
#include <span>

#include "actors/expert_host.hpp"
#include "actors/routed_batch.hpp"
#include "transport/frame.hpp"

namespace xmesh::actors {

namespace {

using clock_type = std::chrono::steady_clock;
using model::expert_errc;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_type::now().time_since_epoch())
      .count();
}

}  // namespace

router_service::router_service(int64_t hidden, router_options options, channel_opener open,
                               std::unique_ptr<replica_policy> policy)
    : hidden_(hidden),
      options_(options),
      open_(std::move(open)),
      policy_(policy ? std::move(policy) : std::make_unique<least_outstanding_policy>()) {}

router_service::~router_service() = default;

void router_service::set_table(std::shared_ptr<const placement_table> table) {
  std::lock_guard lock(mutex_);
  if (table_ && table->version <= table_->version) return;
  if (!table_ || table_->num_layers != table->num_layers ||
      table_->num_experts != table->num_experts)
    tokens_ =
        std::make_unique<load_window>(table->num_layers * table->num_experts, options_.window_s);
  table_ = std::move(table);
  // Per-node state never shrinks: parts in flight may name a node index of an older table.
  const size_t nodes = std::max(outstanding_.size(), table_->nodes.size());
  outstanding_.resize(nodes, 0);
  rtt_sum_.resize(nodes, 0.0);
  rtt_count_.resize(nodes, 0.0);
  suspect_until_.resize(nodes);
  if (metrics_) {
    metrics_->set_shape(table_->num_layers, table_->num_experts);
    metrics_->set_placement_version(table_->version);
    peers_.resize(table_->nodes.size());
    for (size_t n = 0; n < peers_.size(); ++n) peers_[n] = &metrics_->peer_of(table_->nodes[n]);
  }
}

std::shared_ptr<const placement_table> router_service::table() const {
  std::lock_guard lock(mutex_);
  return table_;
}

void router_service::when_drained(uint64_t version, std::function<void()> done) {
  {
    std::lock_guard lock(mutex_);
    drain_waiters_.emplace(version, std::move(done));
  }
  notify_drained();
}

void router_service::notify_drained() {
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard lock(mutex_);
    while (!in_flight_.empty() && in_flight_.begin()->second == 0)
      in_flight_.erase(in_flight_.begin());
    // Waiters for a version at or below the oldest one still in flight are done.
    uint64_t oldest = in_flight_.empty() ? UINT64_MAX : in_flight_.begin()->first;
    for (auto it = drain_waiters_.begin(); it != drain_waiters_.end() && it->first <= oldest;) {
      ready.push_back(std::move(it->second));
      it = drain_waiters_.erase(it);
    }
  }
  for (auto& f : ready) f();
}

std::unique_ptr<model::expert_batch> router_service::submit(int64_t layer, const float* x,
                                                            int64_t num_tokens,
                                                            const int32_t* expert_ids, int32_t k,
                                                            float* y,
                                                            const uint8_t* low_precision) {
  return submit_on(layer, x, num_tokens, expert_ids, k, y, nullptr, low_precision);
}

void router_service::set_local(expert_host* host, std::string node_name) {
  std::lock_guard lock(mutex_);
  local_host_ = host;
  local_name_ = std::move(node_name);
}

std::unique_ptr<model::expert_batch> router_service::submit_on(int64_t layer, const float* x,
                                                               int64_t num_tokens,
                                                               const int32_t* expert_ids, int32_t k,
                                                               float* y, kernels::thread_pool* pool,
                                                               const uint8_t* low_precision) {
  auto b = std::make_shared<batch_state>();
  b->router = this;
  b->layer = layer;
  b->x = x;
  b->expert_ids = expert_ids;
  b->low_precision = low_precision;
  b->k = k;
  b->y = y;
  b->pool = pool;
  b->deadline = clock_type::now() + options_.deadline;
  std::vector<int32_t> slots;  // a slot a routing policy skipped (id -1) computes nothing
  for (int32_t s = 0; s < static_cast<int32_t>(num_tokens * k); ++s)
    if (expert_ids[s] >= 0) slots.push_back(s);
  {
    std::lock_guard lock(mutex_);
    if (!table_) throw model::expert_error(expert_errc::not_hosted, "no placement table yet");
    int64_t now = now_seconds();
    for (int32_t s : slots) {
      const int64_t slot = layer * table_->num_experts + expert_ids[s];
      tokens_->add(slot, 1, now);
      if (metrics_) metrics_->tokens_routed(slot).Increment();
    }
  }
  try {
    dispatch(b, slots, -1);
  } catch (...) {  // parts already out must not write into `y` once the caller unwinds
    std::lock_guard lock(b->mutex);
    b->abandoned = true;
    throw;
  }
  return make_routed_batch(std::move(b));
}

void router_service::dispatch(const std::shared_ptr<batch_state>& b,
                              const std::vector<int32_t>& slots, int32_t avoid) {
  head_rows here;
  route(b, slots, avoid, b->pool ? &here : nullptr);
  if (!here.files.empty()) {
    if (metrics_) {
      if (here.store_misses > 0)
        metrics_->store_misses_on_head().Increment(static_cast<double>(here.store_misses));
      if (here.files.size() > here.store_misses)
        metrics_->resent("files").Increment(
            static_cast<double>(here.files.size() - here.store_misses));
    }
    compute_from_files(*b, here.files);
  }
  if (!here.replicas.empty() &&
      !local_host_->compute_here(b->layer, b->x, b->expert_ids, b->k, here.replicas, b->y, hidden_,
                                 *b->pool)) {
    // A local replica retired between the choice and the computation: route those rows again.
    count_resent(here.replicas.size(), "not_hosted");
    route(b, here.replicas, -1);
  }
}

void router_service::mirror_stores(
    std::map<std::string, std::unique_ptr<model::expert_cache_model>> mirrors) {
  std::lock_guard lock(mutex_);
  mirrors_ = std::move(mirrors);
}

void router_service::set_prefetching(std::set<std::string> nodes) {
  std::lock_guard lock(mutex_);
  prefetching_ = std::move(nodes);
}

void router_service::prefetch(int64_t layer, std::span<const int32_t> experts) {
  // Only over channels already open, to nodes not suspect: a hint never connects or waits.
  std::vector<std::pair<std::shared_ptr<transport::channel>, std::vector<int32_t>>> to;
  {
    std::lock_guard lock(mutex_);
    if (!table_ || prefetching_.empty()) return;
    const auto& t = *table_;
    const auto now = clock_type::now();
    for (int32_t e : experts)
      for (int32_t n : t.replicas(layer, e)) {
        auto open = channels_.find(t.addresses[n]);
        if (!prefetching_.count(t.nodes[n]) || suspect_until_[n] > now || open == channels_.end())
          continue;
        auto at =
            std::find_if(to.begin(), to.end(), [&](auto& x) { return x.first == open->second; });
        if (at == to.end()) at = to.insert(to.end(), {open->second, {}});
        at->second.push_back(e);
      }
  }
  for (auto& [ch, ids] : to) {
    transport::frame_header h;
    h.layer = static_cast<uint32_t>(layer);
    try {
      ch->request(transport::encode_prefetch_frame(h, ids), [](transport::bytes, std::string) {});
    } catch (const std::exception&) {  // a hint only: the dispatch finds the node's state
    }
  }
}

void router_service::compute_from_files(const batch_state& b, std::span<const int32_t> slots) {
  if (b.low_precision)
    for (int32_t s : slots)
      if (b.low_precision[s])
        throw model::expert_error(
            expert_errc::expert_failed,
            "expert " + std::to_string(b.expert_ids[s]) + " of layer " + std::to_string(b.layer) +
                ": a low-precision row has no node left to compute it (the head keeps no "
                "low-precision copy)");
  const auto& experts = fallback_->layers[b.layer].experts;
  model::compute_expert_slots(
      slots, b.x, b.expert_ids, b.k, hidden_, [&](int32_t e) { return &experts[e]; }, *b.pool, b.y);
}

void router_service::route(const std::shared_ptr<batch_state>& b, const std::vector<int32_t>& slots,
                           int32_t avoid, head_rows* here_rows) {
  std::vector<batch_part> parts;
  {
    // The table is read and the versions counted under one lock, so when_drained() never
    // misses a frame about to leave with an older table.
    std::lock_guard lock(mutex_);
    const auto& t = *table_;
    const int32_t here = here_rows && local_host_ ? node_index(t, local_name_) : -1;
    // An expert without a replica (its node died) is computed on the head from its own model
    // files; checked first, so a refusal leaves no count behind.
    for (int32_t s : slots) {
      const bool low = b->low_precision && b->low_precision[s];
      if (t.replicas(b->layer, b->expert_ids[s]).empty() && (!(here_rows && fallback_) || low))
        throw model::expert_error(expert_errc::not_hosted,
                                  "expert " + std::to_string(b->expert_ids[s]) + " of layer " +
                                      std::to_string(b->layer) + " has no replica" +
                                      (low ? " to compute a low-precision row (the head keeps no "
                                             "q4 copy)"
                                           : ""));
    }
    std::vector<std::vector<std::pair<int32_t, int32_t>>> by_node(t.nodes.size());
    std::vector<int32_t> others;
    const auto now = clock_type::now();
    for (int32_t s : slots) {
      const int32_t e = b->expert_ids[s];
      const bool low = b->low_precision && b->low_precision[s];
      auto replicas = t.replicas(b->layer, e);
      // Replicas on suspect nodes (a transport error, not yet in a table) and the node a re-send
      // avoids are left out while another choice exists; with none, the head's files serve.
      others.clear();
      for (int32_t r : replicas)
        if (r != avoid && !(suspect_until_[r] > now)) others.push_back(r);
      // A low-precision row stays with the nodes (only their stores keep a q4 copy), even a
      // suspect one: the head cannot compute it.
      if (others.empty() && here_rows && fallback_ && !low) {
        here_rows->files.push_back(s);
        continue;
      }
      if (!others.empty()) replicas = others;
      if (replicas.empty()) continue;  // unreachable: checked above
      int32_t node = policy_->choose(b->layer, e, replicas, outstanding_);
      if (node == here) {  // computed by the caller, before it waits: never outstanding
        here_rows->replicas.push_back(s);
        continue;
      }
      if (auto m = mirrors_.find(t.nodes[node]); m != mirrors_.end() && here_rows && fallback_) {
        auto& store = *m->second;
        if (!store.resident(b->layer, e) && !store.has_room(b->layer)) {
          here_rows->files.push_back(s);
          ++here_rows->store_misses;
          continue;
        }
        store.touch(b->layer, &e, 1);
      }
      ++outstanding_[node];
      by_node[node].emplace_back(e, s);
    }
    // A node's share goes in frames of at most this many pairs (expert hosts accept no more).
    const size_t per_frame = expert_host::max_pairs_per_frame(hidden_);
    for (size_t n = 0; n < by_node.size(); ++n) {
      auto& share = by_node[n];
      if (share.empty()) continue;
      // Rows of one expert lie together, so an expert host computes them in place.
      std::sort(share.begin(), share.end());
      for (size_t from = 0; from < share.size(); from += per_frame) {
        parts.push_back(make_part(t, static_cast<int32_t>(n), *b,
                                  {share.data() + from, std::min(per_frame, share.size() - from)}));
        ++in_flight_[t.version];
      }
    }
  }
  size_t first;
  {
    std::lock_guard lock(b->mutex);
    first = b->parts.size();
    for (auto& p : parts) b->parts.push_back(std::move(p));
    b->pending += static_cast<int>(parts.size());
  }
  for (size_t i = first; i < first + parts.size(); ++i) send_part(b, i);
}

batch_part router_service::make_part(const placement_table& t, int32_t node, const batch_state& b,
                                     std::span<const std::pair<int32_t, int32_t>> pairs) {
  batch_part p;
  p.node = node;
  p.node_name = t.nodes[node];
  p.address = t.addresses[node];
  const uint64_t number = next_batch_++;
  // Unique in the cluster: the head's index above its own count.
  p.batch_id = (uint64_t{options_.head_id} << 48) | (number & ((uint64_t{1} << 48) - 1));
  p.version = t.version;
  if (metrics_) p.metered = peers_[node];
  // A token's row goes once to a node's frame, whatever number of its experts run there.
  std::vector<int32_t> row_of_token;
  for (auto [e, s] : pairs) {
    p.experts.push_back(e);
    p.slots.push_back(s);
    const int32_t token = s / b.k;
    if (static_cast<size_t>(token) >= row_of_token.size()) row_of_token.resize(token + 1, -1);
    if (row_of_token[token] < 0) {
      row_of_token[token] = static_cast<int32_t>(p.tokens.size());
      p.tokens.push_back(token);
    }
    p.row_of_pair.push_back(row_of_token[token]);
  }
  if (b.low_precision &&
      std::any_of(p.slots.begin(), p.slots.end(), [&](int32_t s) { return b.low_precision[s]; }))
    for (int32_t s : p.slots) p.precision.push_back(b.low_precision[s]);
  return p;
}

void router_service::send_part(const std::shared_ptr<batch_state>& b, size_t index) {
  auto& p = b->parts[index];
  std::shared_ptr<transport::channel> ch;
  try {
    ch = channel(p.address);
  } catch (const std::exception& e) {
    return on_reply(b, index, {}, e.what());
  }
  const auto start = clock_type::now();
  transport::frame_header h;
  h.kind = transport::frame_kind::dispatch;
  h.layer = static_cast<uint32_t>(b->layer);
  h.placement_version = p.version;
  h.batch_id = p.batch_id;
  h.num_rows = static_cast<uint32_t>(p.tokens.size());
  h.hidden = static_cast<uint32_t>(hidden_);
  transport::frame_builder frame(h, p.experts, p.slots, p.row_of_pair, p.precision);
  for (size_t r = 0; r < p.tokens.size(); ++r)
    std::memcpy(frame.rows() + r * hidden_, b->x + p.tokens[r] * hidden_, sizeof(float) * hidden_);
  auto sealed = frame.seal();
  if (p.metered) {
    p.metered->frames_sent->Increment();
    p.metered->bytes_sent->Increment(static_cast<double>(sealed.size()));
    metrics_->frame_rows().Observe(static_cast<double>(p.slots.size()));
  }
  p.sent = clock_type::now();
  ++frames_;
  encode_ns_ += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(p.sent - start).count());
  ch->request(std::move(sealed), [b, index](transport::bytes reply, std::string error) {
    on_reply(b, index, std::move(reply), error);
  });
}

void router_service::settle(int32_t node, uint64_t version, int64_t rows, double round_trip_s,
                            double reply_s) {
  if (round_trip_s >= 0) {
    round_trip_ns_ += static_cast<uint64_t>(round_trip_s * 1e9);
    decode_ns_ += static_cast<uint64_t>(reply_s * 1e9);
  }
  {
    std::lock_guard lock(mutex_);
    outstanding_[node] -= rows;
    if (round_trip_s >= 0) {
      rtt_sum_[node] += round_trip_s;
      rtt_count_[node] += 1;
    }
    policy_->observe(node, rows, round_trip_s);
    --in_flight_[version];
  }
  notify_drained();
}

void router_service::suspect(int32_t node) {
  std::lock_guard lock(mutex_);
  suspect_until_[node] = clock_type::now() + options_.suspicion;
}

void router_service::forget_channel(const std::string& address) {
  std::shared_ptr<transport::channel> gone;
  {
    std::lock_guard lock(mutex_);
    if (auto it = channels_.find(address); it != channels_.end()) {
      gone = std::move(it->second);
      channels_.erase(it);
    }
  }
  // Closing fails the frames still out on it, whose callbacks settle under mutex_.
  gone.reset();
}

std::shared_ptr<transport::channel> router_service::channel(const std::string& address) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = channels_.find(address); it != channels_.end()) return it->second;
  }
  std::shared_ptr<transport::channel> c = open_(address);  // outside the lock: may take long
  std::lock_guard lock(mutex_);
  return channels_.emplace(address, std::move(c)).first->second;  // the first connection wins
}

head_load router_service::load() {
  std::lock_guard lock(mutex_);
  head_load out;
  if (!table_) return out;
  out.tokens = tokens_->totals(now_seconds());
  out.rtt_s.resize(rtt_sum_.size(), 0.0);
  for (size_t n = 0; n < rtt_sum_.size(); ++n) {
    if (rtt_count_[n] > 0) out.rtt_s[n] = rtt_sum_[n] / rtt_count_[n];
    rtt_sum_[n] = rtt_count_[n] = 0;
  }
  return out;
}

int64_t router_service::frames_in_flight() const {
  std::lock_guard lock(mutex_);
  int64_t n = 0;
  for (const auto& [v, count] : in_flight_) n += count;
  return n;
}

namespace {
struct counted_batch_impl final : model::expert_batch {
  std::unique_ptr<model::expert_batch> inner;
  clock_type::time_point start;
  int64_t* dispatches;
  double* seconds;
  void wait() override {
    inner->wait();
    ++*dispatches;
    *seconds += std::chrono::duration<double>(clock_type::now() - start).count();
  }
};
}  // namespace

void counted_backend::predicted(int64_t layer, std::vector<int32_t> experts) {
  predicted_layer_ = layer;
  predicted_ = std::move(experts);
}

std::unique_ptr<model::expert_batch> counted_backend::submit(int64_t layer, const float* x,
                                                             int64_t num_tokens,
                                                             const int32_t* expert_ids, int32_t k,
                                                             float* y,
                                                             const uint8_t* low_precision) {
  if (layer == predicted_layer_) {
    int64_t used = 0, correct = 0;
    for (int64_t s = 0; s < num_tokens * k; ++s)
      if (expert_ids[s] >= 0) {
        ++used;
        correct += std::count(predicted_.begin(), predicted_.end(), expert_ids[s]) > 0;
      }
    if (auto* m = inner_.metrics()) {
      m->pregate("predicted").Increment(static_cast<double>(predicted_.size()));
      m->pregate("used").Increment(static_cast<double>(used));
      m->pregate("correct").Increment(static_cast<double>(correct));
    }
    predicted_layer_ = -1;
  }
  auto b = std::make_unique<counted_batch_impl>();
  b->start = clock_type::now();
  b->inner = inner_.submit_on(layer, x, num_tokens, expert_ids, k, y, &pool_, low_precision);
  b->dispatches = &dispatches_;
  b->seconds = &dispatch_seconds_;
  return b;
}

}  // namespace xmesh::actors
