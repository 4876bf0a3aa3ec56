#include "actors/routed_batch.hpp"

#include <cstring>

#include "actors/expert_host.hpp"
#include "actors/router.hpp"
#include "transport/frame.hpp"

namespace xmesh::actors {

namespace {
using clock_type = std::chrono::steady_clock;
using model::expert_errc;
}  // namespace

void on_reply(const std::shared_ptr<batch_state>& b, size_t index, transport::bytes reply,
              const std::string& error) {
  batch_part* part = nullptr;
  {
    std::lock_guard lock(b->mutex);  // re-sends append parts on the session thread
    part = &b->parts[index];
  }
  auto& p = *part;  // its ids and times were set before the frame was sent; only flags change
  const auto arrived = clock_type::now();
  const double rtt = std::chrono::duration<double>(arrived - p.sent).count();
  const int64_t hidden = b->router->hidden();
  expert_errc code = expert_errc::ok;
  std::string why;
  transport::decode_result d;
  if (!error.empty()) {
    code = expert_errc::node_unreachable;
    why = error;
  } else {
    transport::frame_limits limits;
    limits.expected_hidden = static_cast<uint32_t>(hidden);
    d = transport::decode_frame(reply, limits);
    const auto& f = d.frame;
    if (!d) {
      code = expert_errc::bad_frame;
      why = "sent a bad frame: " + d.reason;
    } else if (f.header.kind == transport::frame_kind::error) {
      code = to_expert_errc(static_cast<host_errc>(f.header.flags));
      why = std::string(f.error_text);
    } else if (f.header.kind != transport::frame_kind::result || f.header.layer != b->layer ||
               f.header.batch_id != p.batch_id || f.header.num_pairs != p.slots.size() ||
               !std::equal(p.slots.begin(), p.slots.end(), f.token_of_pair.begin()) ||
               !std::equal(p.experts.begin(), p.experts.end(), f.expert_of_pair.begin())) {
      code = expert_errc::bad_frame;
      why = "answered layer " + std::to_string(b->layer) + " with a wrong frame";
    }
  }
  bool settle = false, done = false;
  {
    std::lock_guard lock(b->mutex);
    if (p.given_up) return;  // re-sent elsewhere already: the batch's `y` is not ours
    settle = !std::exchange(p.settled, true);
    if (code == expert_errc::ok && !b->abandoned) {
      for (size_t r = 0; r < p.slots.size(); ++r)
        std::memcpy(b->y + static_cast<int64_t>(p.slots[r]) * hidden, d.frame.row(r).data(),
                    sizeof(float) * hidden);
    } else if (code != expert_errc::ok) {
      p.failed = true;
      p.error = code;
      p.why = std::move(why);
    }
    done = --b->pending == 0;
  }
  if (done) {
    b->answered.notify_all();  // the session waits for every part, not for each
    // Its pool's workers wake now too, rather than at the session's first job. The session comes
    // first: a worker woken first could take this thread's core and poll there, ahead of it.
    std::lock_guard lock(b->mutex);
    if (!b->abandoned && b->pool) b->pool->prewake();  // (abandoned: the session moved on)
  }
  const bool ok = code == expert_errc::ok;
  if (ok && p.metered) {
    p.metered->frames_received->Increment();
    p.metered->bytes_received->Increment(static_cast<double>(reply.size()));
    p.metered->round_trip->Observe(rtt);
  }
  const double reply_s = std::chrono::duration<double>(clock_type::now() - arrived).count();
  if (settle)
    b->router->settle(p.node, p.version, static_cast<int64_t>(p.slots.size()), ok ? rtt : -1,
                      ok ? reply_s : -1);
}

namespace {

class routed_batch final : public model::expert_batch {
 public:
  explicit routed_batch(std::shared_ptr<batch_state> b) : b_(std::move(b)) {}
  ~routed_batch() override {
    std::lock_guard lock(b_->mutex);
    b_->abandoned = true;  // e.g. the MoE block threw before wait(): no reply may write to y
  }

  void wait() override {
    auto& b = *b_;
    // The session's workers stop spinning for its next job: the nodes computing this batch may
    // share the session's cores (and the last reply wakes the workers again: prewake).
    if (b.pool) b.pool->rest();
    for (;;) {
      std::vector<batch_part*> failed;
      {
        std::unique_lock lock(b.mutex);
        // Waits in slices: a node that stalls (stopped, cut off) never fails its frames, but the
        // coordinator drops it from the placement after the heartbeat timeout.
        while (!b.answered.wait_until(lock, std::min(b.deadline, clock_type::now() + kSlice),
                                      [&] { return b.pending == 0; })) {
          if (clock_type::now() >= b.deadline) return abandon(lock);
          give_up_on_dropped_nodes(lock);
        }
        for (auto& p : b.parts)
          if (p.failed && !std::exchange(p.handled, true)) failed.push_back(&p);
      }
      if (failed.empty()) return;
      for (auto* p : failed) resend_or_throw(*p);
    }
  }

 private:
  static constexpr auto kSlice = std::chrono::milliseconds(100);

  // Parts sent to a node that a newer table gives no replica at all: it was declared dead (or
  // drained); a retirement, by contrast, lets a live node finish what it was sent. They fail
  // now and are re-sent.
  void give_up_on_dropped_nodes(std::unique_lock<std::mutex>& lock) {
    auto& b = *b_;
    auto table = b.router->table();
    std::vector<batch_part*> dropped;
    for (auto& p : b.parts) {
      if (p.settled || p.failed || table->version <= p.version) continue;
      const int32_t n = node_index(*table, p.node_name);  // indices may differ across restarts
      if (n >= 0 && std::find(table->replica_node.begin(), table->replica_node.end(), n) !=
                        table->replica_node.end())
        continue;
      p.settled = p.failed = p.given_up = true;
      p.error = expert_errc::node_unreachable;
      p.why = "dropped from the placement while its frame was out";
      --b.pending;
      dropped.push_back(&p);
    }
    if (dropped.empty()) return;
    lock.unlock();
    for (auto* p : dropped)
      b.router->settle(p->node, p->version, static_cast<int64_t>(p->slots.size()), -1, -1);
    lock.lock();
  }

  void resend_or_throw(const batch_part& p) {
    auto& b = *b_;
    auto fail = [&] {
      const char* lead =
          p.error == expert_errc::node_unreachable ? "cannot reach node '" : "node '";
      throw model::expert_error(p.error, lead + p.node_name + "': " + p.why);
    };
    if (b.resends >= b.router->options().max_resends) fail();
    auto table = b.router->table();
    bool elsewhere = std::any_of(p.experts.begin(), p.experts.end(), [&](int32_t e) {
      auto r = table->replicas(b.layer, e);
      return r.size() > 1 || (r.size() == 1 && r[0] != p.node);
    });
    // A node that lost its replica may be asked again under a newer table; an unreachable
    // node only when another replica exists (else the request fails now, naming the node).
    if (p.error == expert_errc::node_unreachable) {
      b.router->forget_channel(p.address);
      b.router->suspect(p.node);
      if (!elsewhere) {
        // The only replica's node is gone: the head computes those rows from its own files.
        if (!b.router->computes_from_files() || b.pool == nullptr) fail();
        b.router->count_resent(p.slots.size(), "files");
        return b.router->compute_from_files(b, p.slots);
      }
    } else if (p.error != expert_errc::not_hosted) {
      fail();
    }
    ++b.resends;
    b.router->count_resent(p.slots.size(), p.given_up ? "dropped"
                                           : p.error == expert_errc::node_unreachable
                                               ? "unreachable"
                                               : "not_hosted");
    b.router->dispatch(b_, p.slots, p.node);
  }

  void abandon(std::unique_lock<std::mutex>& lock) {
    auto& b = *b_;
    b.abandoned = true;
    std::vector<batch_part*> late;
    std::string names;
    for (auto& p : b.parts)
      if (!std::exchange(p.settled, true)) {
        late.push_back(&p);
        names += (names.empty() ? "'" : ", '") + p.node_name + "'";
      }
    lock.unlock();
    for (auto* p : late)
      b.router->settle(p->node, p->version, static_cast<int64_t>(p->slots.size()), -1, -1);
    throw model::expert_error(expert_errc::deadline_passed,
                              "layer " + std::to_string(b.layer) + ": no answer within " +
                                  std::to_string(b.router->options().deadline.count()) +
                                  " ms from node " + names);
  }

  std::shared_ptr<batch_state> b_;
};

}  // namespace

std::unique_ptr<model::expert_batch> make_routed_batch(std::shared_ptr<batch_state> b) {
  return std::make_unique<routed_batch>(std::move(b));
}

}  // namespace xmesh::actors
