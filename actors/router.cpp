#include "actors/router.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "actors/protocol.hpp"
#include "transport/frame.hpp"

namespace xmesh::actors {

namespace {

constexpr auto reply_timeout = std::chrono::seconds(60);

// Replica choice: any replica gives the same bits (batch-invariant kernels); spread by slot.
void plan_rows(dispatch_job& job) {
  job.to.assign(job.channels.size(), {});
  for (int64_t s = 0; s < job.num_tokens * job.k; ++s) {
    auto replicas = job.table->replicas(job.layer, job.expert_ids[s]);
    auto& o = job.to[replicas[s % static_cast<int64_t>(replicas.size())]];
    const float* row = job.x + (s / job.k) * job.hidden;
    o.experts.push_back(job.expert_ids[s]);
    o.slots.push_back(static_cast<int32_t>(s));
    o.rows.insert(o.rows.end(), row, row + job.hidden);
  }
}

void send_frames(caf::event_based_actor* self, const dispatch_job_ptr& job) {
  plan_rows(*job);
  job->replies.resize(job->to.size());
  job->errors.resize(job->to.size());
  auto me = caf::actor_cast<caf::actor>(self);
  uint64_t batch = job->first_batch_id;
  for (size_t n = 0; n < job->to.size(); ++n) {
    const auto& o = job->to[n];
    if (o.slots.empty()) continue;
    transport::frame_header h;
    h.kind = transport::frame_kind::dispatch;
    h.layer = static_cast<uint32_t>(job->layer);
    h.placement_version = job->table->version;
    h.batch_id = batch++;
    h.num_rows = static_cast<uint32_t>(o.slots.size());
    h.hidden = static_cast<uint32_t>(job->hidden);
    ++job->remaining;
    // Transport thread: fill this node's slot, then let the actor count it (the message
    // orders the write before the actor's read).
    job->channels[n]->request(transport::encode_frame(h, o.experts, o.slots, o.rows),
                              [job, n, me](transport::bytes reply, std::string error) {
                                job->replies[n] = std::move(reply);
                                job->errors[n] = std::move(error);
                                caf::anon_send(me, reply_atom_v, job);
                              });
  }
  if (job->remaining == 0) job->done.set_value();
}

}  // namespace

caf::behavior router_actor(caf::event_based_actor* self) {
  return {
      [=](dispatch_atom, const dispatch_job_ptr& job) { send_frames(self, job); },
      [=](reply_atom, const dispatch_job_ptr& job) {
        if (--job->remaining == 0) job->done.set_value();
      },
  };
}

routed_experts::routed_experts(std::shared_ptr<const placement_table> table,
                               std::vector<transport::channel*> channels,
                               const std::vector<caf::actor>& routers, int64_t hidden)
    : table_(std::move(table)),
      channels_(std::move(channels)),
      routers_(routers),
      hidden_(hidden) {}

void routed_experts::run(int64_t layer, const float* x, int64_t num_tokens,
                         const int32_t* expert_ids, int32_t k, float* y) {
  auto job = std::make_shared<dispatch_job>();
  job->layer = layer;
  job->x = x;
  job->num_tokens = num_tokens;
  job->expert_ids = expert_ids;
  job->k = k;
  job->hidden = hidden_;
  job->first_batch_id = next_batch_;
  next_batch_ += channels_.size();
  job->table = table_;
  job->channels = channels_;
  auto done = job->done.get_future();
  auto start = std::chrono::steady_clock::now();
  caf::anon_send(routers_[layer], dispatch_atom_v, job);
  if (done.wait_for(reply_timeout) != std::future_status::ready) {
    // The job stays alive with the actor; it only ever writes into its own buffers.
    throw std::runtime_error("layer " + std::to_string(layer) +
                             ": no reply from the expert nodes within 60 s");
  }
  dispatch_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++dispatches_;
  for (size_t n = 0; n < job->to.size(); ++n) {
    if (job->to[n].slots.empty()) continue;
    failed_node_ = static_cast<int>(n);  // blamed if anything below throws
    accept_reply(*job, n, y);
  }
  failed_node_ = -1;
}

void routed_experts::accept_reply(const dispatch_job& job, size_t n, float* y) const {
  const std::string& node = table_->nodes[n];
  const auto& sent = job.to[n];
  if (!job.errors[n].empty()) throw std::runtime_error("node '" + node + "': " + job.errors[n]);
  transport::frame_limits limits;
  limits.expected_hidden = static_cast<uint32_t>(hidden_);
  auto d = transport::decode_frame(job.replies[n], limits);
  if (!d) throw std::runtime_error("node '" + node + "' sent a bad frame: " + d.reason);
  const auto& f = d.frame;
  if (f.header.kind == transport::frame_kind::error)
    throw std::runtime_error("node '" + node + "': " + std::string(f.error_text));
  // The reply must answer exactly what was asked: same layer, rows, experts and slots.
  bool matches = f.header.kind == transport::frame_kind::result && f.header.layer == job.layer &&
                 f.header.num_rows == sent.slots.size() &&
                 std::equal(sent.slots.begin(), sent.slots.end(), f.token_of_row.begin()) &&
                 std::equal(sent.experts.begin(), sent.experts.end(), f.expert_of_row.begin());
  if (!matches)
    throw std::runtime_error("node '" + node + "' answered layer " + std::to_string(job.layer) +
                             " with a wrong frame");
  for (uint32_t r = 0; r < f.header.num_rows; ++r)
    std::copy_n(f.row(r).data(), hidden_, y + static_cast<int64_t>(sent.slots[r]) * hidden_);
}

}  // namespace xmesh::actors
