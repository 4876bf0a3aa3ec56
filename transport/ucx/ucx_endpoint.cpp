#include "transport/ucx/ucx_endpoint.hpp"

#include <chrono>
#include <future>
#include <stdexcept>
#include <utility>

#include "transport/ucx/ucx_engine.hpp"

namespace xmesh::transport {
namespace ucx {
ucx_engine::ucx_engine() {
  if (queue_.fd() < 0) throw std::runtime_error("ucx transport: eventfd failed");
  thread_ = std::thread([this] { run(); });
}

void ucx_engine::stop() {
  if (stopping_.exchange(true)) return;
  queue_.push({});
  if (thread_.joinable()) thread_.join();
}

bool ucx_engine::run_on_io(std::function<void()> task) {
  if (acting_as_ == this) {  // the progress thread, or a thread posting in its stead
    task();
    return true;
  }
  if (stopping_) return false;
  queue_.push(std::move(task));
  return true;
}

bool ucx_engine::post(std::function<void()> task) {
  if (acting_as_ == this || stopping_) return run_on_io(std::move(task));
  // The progress thread holds io_mutex_ except while it sleeps in poll(). Then this thread posts
  // the operation itself, under the lock, instead of waking it: a wake-up costs 30-45 us on
  // virtual machines, more than a loopback round trip, and each frame's send (head) and reply
  // (expert node) would pay one. The progress thread is woken only when the operation needs
  // progress to finish, or left work for it (deferred_: callbacks never run on this thread).
  // (A task that finds the lock taken is queued, so a later one posted directly may overtake it:
  // sends to one peer keep no order, which the frames' ids make harmless.)
  if (std::unique_lock borrowed(io_mutex_, std::try_to_lock);
      borrowed.owns_lock() && worker_ && !stopping_) {
    struct acting {  // restored even when the task throws
      ucx_engine* before;
      ~acting() { acting_as_ = before; }
    } restore{std::exchange(acting_as_, this)};
    task();
    if (sends_in_flight_ > 0 || !closing_.empty() || !deferred_.empty()) queue_.push({});
    return true;
  }
  return run_on_io(std::move(task));
}

// No sockaddr listener: UCX's TCP connection manager aborts the process on a stranger's malformed
// bytes. The worker's address is published instead (nodes send it to the coordinator over the
// control plane) and peers create endpoints from it; the worker's own TCP port survives junk.
void ucx_engine::listen(const std::string& address, request_handler handler) {
  const ucx_address a = parse_address(address);
  auto done = std::make_shared<std::promise<std::string>>();
  auto fut = done->get_future();
  bool queued = run_on_io([this, a, done, h = std::move(handler)]() mutable {
    if (handler_) return settle(*done, "already listening on " + listen_address());
    try {
      ensure_worker(a);
      ucp_address_t* blob = nullptr;
      size_t size = 0;
      if (auto st = ucp_worker_get_address(worker_, &blob, &size); st != UCS_OK)
        return settle(*done, status_message("ucp_worker_get_address", st));
      {
        std::lock_guard lock(address_mutex_);
        bound_address_ = format_worker_address(a.host, blob, size);
      }
      ucp_worker_release_address(worker_, blob);
      handler_ = std::move(h);
      settle(*done, {});
    } catch (const std::exception& e) {
      settle(*done, e.what());
    }
  });
  if (!queued) throw std::runtime_error("ucx endpoint is shut down");
  if (auto err = fut.get(); !err.empty()) throw std::runtime_error(err);
}

// Creates a client ep from a peer's worker address and proves the peer answers with a ping/pong
// within the timeout.
std::shared_ptr<channel_state> ucx_engine::open_channel(const std::string& address,
                                                        int timeout_ms) {
  auto [a, blob] = parse_worker_address(address);
  auto st = std::make_shared<channel_state>();
  st->id = next_channel_id_++;
  st->address = address.substr(0, address.find('/', 13));  // errors name the host, not the blob
  auto reached = std::make_shared<std::promise<std::string>>();
  auto fut = reached->get_future();
  bool queued = run_on_io([this, a, blob, st, reached] {
    try {
      ensure_worker(a);
      ucp_ep_params_t p{};
      p.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
      p.address = reinterpret_cast<const ucp_address_t*>(blob.data());
      ucp_ep_h ep = create_ep(p, true, st->id);
      clients_[st->id] = {ep, st};
      uint64_t id = st->pending.add([reached](bytes, std::string err) { settle(*reached, err); });
      if (auto s = am_send(ep, am_ping, {st->id, id}, {}, true); UCS_STATUS_IS_ERR(s)) {
        if (auto cb = st->pending.take(id)) cb({}, status_message("ping", s));
      }
    } catch (const std::exception& e) {
      settle(*reached, e.what());
    }
  });
  if (!queued) throw std::runtime_error("ucx endpoint is shut down");
  await_handshake(fut, st->pending, st->address, timeout_ms, [&] { close_channel(st->id); });
  return st;
}

void ucx_engine::send_request(const std::shared_ptr<channel_state>& ch, bytes message,
                              reply_callback cb) {
  uint64_t id = ch->pending.add(std::move(cb));
  if (id == 0) {
    std::string why = ch->pending.close_reason();
    if (!run_on_io([cb, why] { cb({}, why); })) cb({}, why);
    return;
  }
  bool queued = post([this, ch, id, m = std::move(message)]() mutable {
    auto it = clients_.find(ch->id);
    if (it == clients_.end() || !it->second.ep) return;  // closed: pending failed already
    if (auto s = am_send(it->second.ep, am_request, {ch->id, id}, std::move(m), true);
        UCS_STATUS_IS_ERR(s)) {
      deferred_.emplace_back([ch, id, why = status_message("send to " + ch->address, s)] {
        if (auto c = ch->pending.take(id)) c({}, why);
      });
    }
  });
  if (!queued) {
    if (auto c = ch->pending.take(id)) c({}, "ucx endpoint is shut down");
  }
}

void ucx_engine::shutdown_io() {
  for (auto& task : queue_.take_all()) {
    if (task) task();  // callers of listen()/connect() wait for an answer
  }
  for (auto& [id, c] : clients_) c.state->pending.fail_all("ucx endpoint shut down", true);
  if (!worker_) return;
  handler_ = nullptr;
  for (auto& [id, c] : clients_) {
    if (c.ep) close_ep(c.ep);
  }
  for (auto& [id, ep] : server_eps_) close_ep(ep);
  clients_.clear();
  server_eps_.clear();
  // Bounded: a FORCE close does not wait for the peer, but cancelled operations need progress.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!closing_.empty() && std::chrono::steady_clock::now() < deadline) {
    ucp_worker_progress(worker_);
    deferred_.clear();  // nobody to deliver to any more
    std::erase_if(closing_, [](void* r) {
      if (ucp_request_check_status(r) == UCS_INPROGRESS) return false;
      ucp_request_free(r);
      return true;
    });
  }
  for (void* r : closing_) ucp_request_free(r);
  closing_.clear();
  for (auto& [desc, op] : rndv_) {
    ucp_am_data_release(worker_, desc);
    delete op;
  }
  rndv_.clear();
  deferred_.clear();
  ucp_worker_destroy(worker_);
  ucp_cleanup(context_);
  worker_ = nullptr;
  context_ = nullptr;
}

}  // namespace ucx

namespace {

class ucx_channel : public channel {
 public:
  ucx_channel(std::shared_ptr<ucx::ucx_engine> engine, std::shared_ptr<ucx::channel_state> state)
      : engine_(std::move(engine)), state_(std::move(state)) {}
  ~ucx_channel() override {
    state_->pending.fail_all("channel to " + state_->address + " closed", true);
    engine_->close_channel(state_->id);
  }
  void request(bytes message, reply_callback on_reply) override {
    engine_->send_request(state_, std::move(message), std::move(on_reply));
  }

 private:
  std::shared_ptr<ucx::ucx_engine> engine_;
  std::shared_ptr<ucx::channel_state> state_;
};

class ucx_endpoint : public endpoint {
 public:
  ucx_endpoint() : engine_(std::make_shared<ucx::ucx_engine>()) {}
  ~ucx_endpoint() override { engine_->stop(); }

  void limit_requests(size_t max_bytes) override { engine_->limit_requests(max_bytes); }
  void listen(const std::string& address, request_handler handler) override {
    engine_->listen(address, std::move(handler));
  }
  std::unique_ptr<channel> connect(const std::string& address, int timeout_ms) override {
    return std::make_unique<ucx_channel>(engine_, engine_->open_channel(address, timeout_ms));
  }
  [[nodiscard]] std::string listen_address() const override { return engine_->listen_address(); }
  [[nodiscard]] std::string name() const override { return "ucx"; }

 private:
  std::shared_ptr<ucx::ucx_engine> engine_;
};

}  // namespace

std::unique_ptr<endpoint> make_ucx_endpoint() { return std::make_unique<ucx_endpoint>(); }

}  // namespace xmesh::transport
