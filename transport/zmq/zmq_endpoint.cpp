// The side of the ZeroMQ engine that other threads call: listen, connect, send (zmq_engine.hpp).
#include "transport/zmq/zmq_endpoint.hpp"

#include <future>
#include <stdexcept>
#include <utility>

#include "transport/zmq/zmq_engine.hpp"

namespace xmesh::transport {
namespace zeromq {
namespace {

void check_scheme(const std::string& address) {
  if (address.rfind("tcp://", 0) != 0 && address.rfind("ipc://", 0) != 0)
    throw std::invalid_argument(
        "zmq transport address must be tcp://HOST:PORT or ipc://PATH, got '" + address + "'");
}

// "tcp://127.0.0.1:0" asks for an ephemeral port, which libzmq spells "*".
std::string bind_spelling(const std::string& address) {
  if (address.rfind("tcp://", 0) == 0 && address.size() > 2 &&
      address.compare(address.size() - 2, 2, ":0") == 0)
    return address.substr(0, address.size() - 1) + "*";
  return address;
}

void set_common_options(zmq::socket_t& s) {
  s.set(zmq::sockopt::linger, 0);
  // Unbounded queues: flow is bounded by the callers' windows; HWM drops would lose replies.
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  // A peer sending more than this is disconnected by ZeroMQ before the message is buffered.
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(max_message_bytes));
}

}  // namespace

void zmq_engine::listen(const std::string& address, request_handler handler) {
  check_scheme(address);
  auto done = std::make_shared<std::promise<std::string>>();
  auto fut = done->get_future();
  bool queued = run_on_io([this, address, done, h = std::move(handler)]() mutable {
    if (router_) return done->set_value("already listening on " + bound_address_);
    try {
      auto s = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::router);
      set_common_options(*s);
      // A peer announcing a bigger request is disconnected before it is buffered; one sending
      // faster than this node reads is held back (a full inbound queue stops reading its
      // connection: TCP flow control, nothing dropped) instead of queueing without end.
      s->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(request_limit_.load()));
      s->set(zmq::sockopt::rcvhwm, 1024);
      // A peer that does not finish ZMTP's handshake is dropped after 5 s
      // (ZeroMQ's default waits 30 s), so held connections cannot pile up.
      s->set(zmq::sockopt::handshake_ivl, 5000);
      s->bind(bind_spelling(address));
      {
        std::lock_guard lock(address_mutex_);
        bound_address_ = s->get(zmq::sockopt::last_endpoint);
      }
      // Failed accepts are watched: libzmq retries one that failed for want of descriptors at
      // once, forever (its TODO), so the listener is closed for a while instead (accept_paused).
      const std::string mon = "inproc://xmesh-zmq-router-monitor";
      if (zmq_socket_monitor(s->handle(), mon.c_str(), ZMQ_EVENT_ACCEPT_FAILED) != 0)
        throw zmq::error_t();
      router_monitor_ = zmq::socket_t(context_, zmq::socket_type::pair);
      router_monitor_.set(zmq::sockopt::linger, 0);
      router_monitor_.connect(mon);
      router_ = std::move(s);
      handler_ = std::move(h);
      items_dirty_ = true;
      done->set_value({});
    } catch (const zmq::error_t& e) {
      done->set_value("cannot listen on " + address + ": " + e.what());
    }
  });
  if (!queued) throw std::runtime_error("zmq endpoint is shut down");
  if (auto err = fut.get(); !err.empty()) throw std::runtime_error(err);
}

// Opens a DEALER and proves the peer is there with a ping/pong before returning.
std::shared_ptr<channel_state> zmq_engine::open_channel(const std::string& address,
                                                        int timeout_ms) {
  check_scheme(address);
  auto st = std::make_shared<channel_state>();
  st->id = next_channel_id_++;
  st->address = address;
  auto reached = std::make_shared<std::promise<std::string>>();
  auto fut = reached->get_future();
  bool queued = run_on_io([this, st, reached] {
    try {
      dealer d{st, zmq::socket_t(context_, zmq::socket_type::dealer),
               zmq::socket_t(context_, zmq::socket_type::pair)};
      set_common_options(d.socket);
      d.socket.set(zmq::sockopt::reconnect_ivl, 100);
      // ZMTP heartbeats turn a silently dead peer into a disconnect event.
      d.socket.set(zmq::sockopt::heartbeat_ivl, 1000);
      d.socket.set(zmq::sockopt::heartbeat_timeout, 4000);
      std::string mon = "inproc://xmesh-zmq-monitor-" + std::to_string(st->id);
      if (zmq_socket_monitor(d.socket.handle(), mon.c_str(),
                             ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0)
        throw zmq::error_t();
      d.monitor.set(zmq::sockopt::linger, 0);
      d.monitor.connect(mon);
      d.socket.connect(st->address);
      uint64_t id = st->pending.add([reached](bytes, std::string err) { settle(*reached, err); });
      d.socket.send(make_envelope(msg_type::ping, id), zmq::send_flags::dontwait);
      dealers_.emplace(st->id, std::move(d));
      items_dirty_ = true;
    } catch (const zmq::error_t& e) {
      settle(*reached, std::string("zmq: ") + e.what());
    }
  });
  if (!queued) throw std::runtime_error("zmq endpoint is shut down");
  await_handshake(fut, st->pending, address, timeout_ms, [&] { close_channel(st->id); });
  return st;
}

void zmq_engine::send_request(const std::shared_ptr<channel_state>& ch, bytes message,
                              reply_callback cb) {
  auto fail = [this](reply_callback c, std::string why) {
    if (!run_on_io([c, why] { c({}, why); })) c({}, why);
  };
  if (ch->down) return fail(std::move(cb), "peer " + ch->address + " is disconnected");
  uint64_t id = ch->pending.add(std::move(cb));
  if (id == 0) return fail(std::move(cb), ch->pending.close_reason());
  bool sent = send_on([this, ch, id, m = std::move(message)]() mutable -> zmq::socket_t* {
    auto it = dealers_.find(ch->id);
    if (it == dealers_.end()) return nullptr;  // closed: its pending requests were failed already
    auto& s = it->second.socket;
    if (!s.send(make_envelope(msg_type::request, id),
                zmq::send_flags::sndmore | zmq::send_flags::dontwait) ||
        !s.send(adopt(std::move(m)), zmq::send_flags::dontwait)) {
      if (auto c = ch->pending.take(id))  // (the callback runs on the I/O thread, as replies do)
        run_on_io([c, why = "zmq: send to " + ch->address + " would block"] { c({}, why); });
    }
    return &s;
  });
  if (!sent) {
    if (auto c = ch->pending.take(id)) c({}, "zmq endpoint is shut down");
  }
}

void zmq_engine::send_reply(const std::string& identity, uint64_t id, bytes message) {
  (void)send_on([this, identity, id, m = std::move(message)]() mutable -> zmq::socket_t* {
    if (!router_) return nullptr;
    try {
      router_->send(zmq::buffer(identity), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router_->send(make_envelope(msg_type::reply, id),
                    zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router_->send(adopt(std::move(m)), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
      // The client went away: nobody waits for this reply (ROUTER drops unknown identities).
    }
    return router_.get();
  });
}

// A thread posting while the I/O thread sleeps sends itself instead of waking it: a wake-up
// costs 20-45 us on virtual machines, and each frame's send (head) would pay one before
// libzmq's own I/O thread pays the next (as ucx_engine::post); an expert node's compute thread
// too (enter_io_thread says why). One that finds the I/O thread awake hands over.
bool zmq_engine::send_on(std::function<zmq::socket_t*()> send) {
  if (std::this_thread::get_id() != io_thread_id_) {
    if (std::unique_lock io(io_mutex_, std::try_to_lock); io.owns_lock() && !stopping_) {
      auto* used = send();
      // A socket reports readiness edge-triggered: the send may have taken the signal that a
      // message came in (ZMQ_FD), which the sleeping I/O thread then never sees. It looks again.
      if (used && (used->get(zmq::sockopt::events) & ZMQ_POLLIN)) queue_.push({});
      return true;
    }
  }
  return run_on_io([send = std::move(send)] { (void)send(); });
}

namespace {

class zmq_channel : public channel {
 public:
  zmq_channel(std::shared_ptr<zmq_engine> engine, std::shared_ptr<channel_state> state)
      : engine_(std::move(engine)), state_(std::move(state)) {}
  ~zmq_channel() override {
    state_->pending.fail_all("channel to " + state_->address + " closed", true);
    engine_->close_channel(state_->id);
  }
  void request(bytes message, reply_callback on_reply) override {
    engine_->send_request(state_, std::move(message), std::move(on_reply));
  }

 private:
  std::shared_ptr<zmq_engine> engine_;
  std::shared_ptr<channel_state> state_;
};

class zmq_endpoint : public endpoint {
 public:
  zmq_endpoint() : engine_(std::make_shared<zmq_engine>()) { engine_->start(); }
  ~zmq_endpoint() override { engine_->stop(); }

  void limit_requests(size_t max_bytes) override { engine_->limit_requests(max_bytes); }
  void listen(const std::string& address, request_handler handler) override {
    engine_->listen(address, std::move(handler));
  }
  std::unique_ptr<channel> connect(const std::string& address, int timeout_ms) override {
    return std::make_unique<zmq_channel>(engine_, engine_->open_channel(address, timeout_ms));
  }
  [[nodiscard]] std::string listen_address() const override { return engine_->listen_address(); }
  [[nodiscard]] std::string name() const override { return "zmq"; }

 private:
  std::shared_ptr<zmq_engine> engine_;
};

}  // namespace
}  // namespace zeromq

std::unique_ptr<endpoint> make_zmq_endpoint() { return std::make_unique<zeromq::zmq_endpoint>(); }

}  // namespace xmesh::transport
