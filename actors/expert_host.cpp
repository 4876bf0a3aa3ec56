#include "actors/expert_host.hpp"

#include <cstdio>
#include <map>
#include <mutex>

#include "actors/protocol.hpp"
#include "kernels/expert_ffn.hpp"
#include "transport/frame.hpp"

namespace xmesh::actors {

namespace {

// One received dispatch frame until every expert it names has answered.
struct pending_frame {
  transport::bytes message;  // owns the bytes `view` points into
  transport::frame_view view;
  std::vector<float> outputs;  // num_rows * hidden, request order
  std::atomic<int> remaining{0};
  std::atomic<bool> failed{false};
  std::shared_ptr<transport::reply_handle> reply;
  std::atomic<uint64_t>* served = nullptr;

  // Counters first: the host may be gone once the requester has its answer.
  void finish() {
    if (failed) return;
    auto h = view.header;
    h.kind = transport::frame_kind::result;
    served->fetch_add(1);
    reply->send(transport::encode_frame(h, view.expert_of_row, view.token_of_row, outputs));
  }
  // Answers once with an error, so the requester fails fast instead of timing out.
  void fail(const std::string& why) {
    if (failed.exchange(true)) return;
    reply->send(transport::encode_error_frame(view.header, why));
  }
};

struct piece {
  std::shared_ptr<pending_frame> frame;
  std::vector<uint32_t> rows;  // row indices of `frame` for this expert
};

}  // namespace

/// The rows queued for one hosted expert; its actor drains them as one batch.
struct expert_queue {
  const kernels::expert_weights* weights = nullptr;
  std::mutex mutex;
  std::vector<piece> items;
  bool scheduled = false;
  kernels::thread_pool pool{1};  // runs inline: parallelism comes from many expert actors

  /// Adds a piece; true when the actor must be woken.
  bool push(piece p) {
    std::lock_guard lock(mutex);
    items.push_back(std::move(p));
    return !std::exchange(scheduled, true);
  }

  /// Runs everything queued, again and again, until the queue is empty.
  void run() {
    for (;;) {
      std::vector<piece> batch;
      {
        std::lock_guard lock(mutex);
        if (items.empty()) {
          scheduled = false;
          return;
        }
        batch.swap(items);
      }
      try {
        compute(batch);
      } catch (const std::exception& e) {  // e.g. out of memory: fail these frames, keep serving
        for (auto& p : batch) p.frame->fail(std::string("expert failed: ") + e.what());
      }
    }
  }

  void compute(std::vector<piece>& batch) {
    const int64_t hidden = weights->hidden();
    int64_t n = 0;
    for (const auto& p : batch) n += static_cast<int64_t>(p.rows.size());
    std::vector<float> x(n * hidden), y(n * hidden);
    int64_t at = 0;
    for (const auto& p : batch)
      for (uint32_t r : p.rows)
        std::copy_n(p.frame->view.row(r).data(), hidden, x.data() + (at++) * hidden);
    kernels::expert_job job{weights, x.data(), n, y.data()};
    kernels::run_experts({&job, 1}, pool);
    at = 0;
    for (auto& p : batch) {
      for (uint32_t r : p.rows)
        std::copy_n(y.data() + (at++) * hidden, hidden, p.frame->outputs.data() + r * hidden);
      if (p.frame->remaining.fetch_sub(1) == 1) p.frame->finish();
    }
  }
};

expert_host::expert_host(caf::actor_system& system, const model::loaded_model& model,
                         const placement_table& table, const std::string& node_name)
    : system_(system), model_(model), node_name_(node_name) {
  const auto& c = model.config;
  queues_.resize(c.num_layers * c.num_experts);
  actors_.resize(queues_.size());
  for (int64_t slot : hosted_experts(table, node_name)) {
    int64_t layer = slot / c.num_experts, expert = slot % c.num_experts;
    if (!model.weights.layers[layer].moe) continue;
    auto q = std::make_shared<expert_queue>();
    q->weights = &model.weights.layers[layer].experts[expert];
    queues_[slot] = q;
    actors_[slot] = system.spawn(
        [q](caf::event_based_actor*) -> caf::behavior { return {[q](run_atom) { q->run(); }}; });
  }
}

expert_host::~expert_host() { stop(); }

void expert_host::reject(const std::string& reason,
                         const std::shared_ptr<transport::reply_handle>& reply) {
  uint64_t n = dropped_.fetch_add(1) + 1;
  if (n <= 10 || n % 1000 == 0)
    std::fprintf(stderr, "xmesh node %s: dropped frame: %s (%llu dropped so far)\n",
                 node_name_.c_str(), reason.c_str(), static_cast<unsigned long long>(n));
  transport::frame_header h;
  reply->send(transport::encode_error_frame(h, reason));
}

void expert_host::on_message(transport::bytes message,
                             std::shared_ptr<transport::reply_handle> reply) {
  try {
    serve(std::move(message), reply);
  } catch (const std::exception& e) {  // never let network input take the node down
    reject(std::string("cannot serve frame: ") + e.what(), reply);
  }
}

// Handles stay valid (the receive thread may still read them); messages to an actor that has
// exited are dropped by CAF.
void expert_host::stop() {
  caf::scoped_actor self{system_};
  for (const auto& a : actors_)
    if (a) {
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      self->wait_for(a);
    }
}

void expert_host::serve(transport::bytes message,
                        const std::shared_ptr<transport::reply_handle>& reply) {
  const auto& c = model_.config;
  transport::frame_limits limits;
  limits.max_expert = static_cast<uint32_t>(c.num_experts - 1);
  limits.expected_hidden = static_cast<uint32_t>(c.hidden);
  limits.max_rows = max_rows_per_frame;
  limits.max_payload_bytes =
      uint64_t{max_rows_per_frame} * (8 + 4 * static_cast<uint64_t>(c.hidden));
  auto frame = std::make_shared<pending_frame>();
  frame->message = std::move(message);
  auto d = transport::decode_frame(frame->message, limits);
  if (!d) return reject(std::string(transport::to_string(d.error)) + ": " + d.reason, reply);
  const auto& h = d.frame.header;
  if (h.kind != transport::frame_kind::dispatch) return reject("not a dispatch frame", reply);
  if (h.layer >= c.num_layers || !model_.weights.layers[h.layer].moe)
    return reject("layer " + std::to_string(h.layer) + " has no experts", reply);
  std::map<int32_t, std::vector<uint32_t>> rows_of;
  for (uint32_t r = 0; r < h.num_rows; ++r) {
    int32_t e = d.frame.expert_of_row[r];
    if (!queues_[h.layer * c.num_experts + e])
      return reject("expert " + std::to_string(e) + " of layer " + std::to_string(h.layer) +
                        " is not hosted on " + node_name_,
                    reply);
    rows_of[e].push_back(r);
  }
  frame->view = d.frame;
  frame->outputs.resize(static_cast<size_t>(h.num_rows) * h.hidden);
  frame->reply = reply;
  frame->served = &served_;
  if (rows_of.empty()) return frame->finish();
  frame->remaining = static_cast<int>(rows_of.size());
  for (auto& [e, rows] : rows_of) {
    int64_t slot = h.layer * c.num_experts + e;
    if (queues_[slot]->push({frame, std::move(rows)})) caf::anon_send(actors_[slot], run_atom_v);
  }
}

}  // namespace xmesh::actors
