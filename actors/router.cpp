#include "actors/router.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>

#include "transport/frame.hpp"

namespace xmesh::actors {

namespace {

constexpr auto reply_timeout = std::chrono::seconds(60);

// Replies of one dispatch round, filled in on transport threads.
struct gather {
  std::mutex mutex;
  std::condition_variable done;
  size_t remaining = 0;
  std::vector<transport::bytes> replies;
  std::vector<std::string> errors;
};

// Rows bound for one node in one round.
struct outbound {
  std::vector<int32_t> experts, slots;
  std::vector<float> rows;
};

}  // namespace

router::router(const placement_table& table, std::vector<transport::channel*> channels, int64_t hidden)
    : table_(table), channels_(std::move(channels)), hidden_(hidden) {}

void router::run(int64_t layer, const float* x, int64_t num_tokens, const int32_t* expert_ids, int32_t k,
                 float* y) {
  // Replica choice: any replica gives the same bits (batch-invariant kernels); spread by slot.
  std::vector<outbound> to(channels_.size());
  for (int64_t s = 0; s < num_tokens * k; ++s) {
    auto replicas = table_.replicas(layer, expert_ids[s]);
    auto& o = to[replicas[s % static_cast<int64_t>(replicas.size())]];
    o.experts.push_back(expert_ids[s]);
    o.slots.push_back(static_cast<int32_t>(s));
    o.rows.insert(o.rows.end(), x + (s / k) * hidden_, x + (s / k + 1) * hidden_);
  }
  auto g = std::make_shared<gather>();
  g->replies.resize(to.size());
  g->errors.resize(to.size());
  std::vector<size_t> used;
  for (size_t n = 0; n < to.size(); ++n)
    if (!to[n].slots.empty()) used.push_back(n);
  g->remaining = used.size();
  auto start = std::chrono::steady_clock::now();
  for (size_t n : used) {
    transport::frame_header h;
    h.kind = transport::frame_kind::dispatch;
    h.layer = static_cast<uint32_t>(layer);
    h.placement_version = table_.version;
    h.batch_id = next_batch_++;
    h.num_rows = static_cast<uint32_t>(to[n].slots.size());
    h.hidden = static_cast<uint32_t>(hidden_);
    channels_[n]->request(transport::encode_frame(h, to[n].experts, to[n].slots, to[n].rows),
                          [g, n](transport::bytes reply, std::string error) {
                            std::lock_guard lock(g->mutex);
                            g->replies[n] = std::move(reply);
                            g->errors[n] = std::move(error);
                            if (--g->remaining == 0) g->done.notify_all();
                          });
  }
  {
    std::unique_lock lock(g->mutex);
    if (!g->done.wait_for(lock, reply_timeout, [&] { return g->remaining == 0; })) {
      for (size_t n : used)
        if (g->replies[n].empty() && g->errors[n].empty()) failed_node_ = static_cast<int>(n);
      throw std::runtime_error("layer " + std::to_string(layer) + ": no reply from node '" +
                               table_.nodes[failed_node_] + "' within 60 s");
    }
  }
  dispatch_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++dispatches_;
  for (size_t n : used) {
    failed_node_ = static_cast<int>(n);  // blamed if anything below throws
    accept_reply(layer, n, to[n].experts, to[n].slots, g->replies[n], g->errors[n], y);
  }
  failed_node_ = -1;
}

void router::accept_reply(int64_t layer, size_t n, const std::vector<int32_t>& experts,
                          const std::vector<int32_t>& slots, const transport::bytes& reply,
                          const std::string& error, float* y) const {
  const std::string& node = table_.nodes[n];
  if (!error.empty()) throw std::runtime_error("node '" + node + "': " + error);
  transport::frame_limits limits;
  limits.expected_hidden = static_cast<uint32_t>(hidden_);
  auto d = transport::decode_frame(reply, limits);
  if (!d) throw std::runtime_error("node '" + node + "' sent a bad frame: " + d.reason);
  const auto& f = d.frame;
  if (f.header.kind == transport::frame_kind::error)
    throw std::runtime_error("node '" + node + "': " + std::string(f.error_text));
  // The reply must answer exactly what was asked: same layer, rows, experts and slots.
  bool matches = f.header.kind == transport::frame_kind::result && f.header.layer == layer &&
                 f.header.num_rows == slots.size() &&
                 std::equal(slots.begin(), slots.end(), f.token_of_row.begin()) &&
                 std::equal(experts.begin(), experts.end(), f.expert_of_row.begin());
  if (!matches)
    throw std::runtime_error("node '" + node + "' answered layer " + std::to_string(layer) + " with a wrong frame");
  for (uint32_t r = 0; r < f.header.num_rows; ++r)
    std::copy_n(f.row(r).data(), hidden_, y + static_cast<int64_t>(slots[r]) * hidden_);
}

}  // namespace xmesh::actors
