#include "transport/zmq/zmq_endpoint.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "transport/io_priority.hpp"
#include "transport/pending.hpp"

namespace xmesh::transport {
namespace {

// -- envelope ------------------------------------------------------------------------------
// Every message is [envelope, payload] (DEALER side) or [identity, envelope, payload] (ROUTER).
enum class msg_type : uint8_t { request = 1, reply = 2, ping = 3, pong = 4 };
constexpr size_t envelope_bytes = 9;  // type u8 + request id u64

zmq::message_t make_envelope(msg_type t, uint64_t id) {
  zmq::message_t m(envelope_bytes);
  auto* p = static_cast<uint8_t*>(m.data());
  p[0] = static_cast<uint8_t>(t);
  std::memcpy(p + 1, &id, sizeof id);
  return m;
}

bool read_envelope(const zmq::message_t& m, msg_type& t, uint64_t& id) {
  if (m.size() != envelope_bytes) return false;
  const auto* p = static_cast<const uint8_t*>(m.data());
  t = static_cast<msg_type>(p[0]);
  std::memcpy(&id, p + 1, sizeof id);
  return true;
}

// Hands the vector's storage to ZeroMQ, which frees it when sent (no copy).
zmq::message_t adopt(bytes payload) {
  if (payload.empty()) return zmq::message_t();
  auto* owned = new bytes(std::move(payload));
  return zmq::message_t(
      owned->data(), owned->size(), [](void*, void* hint) { delete static_cast<bytes*>(hint); },
      owned);
}

// A received payload as bytes: large ones keep ZeroMQ's buffer (no copy), small ones are copied.
bytes take_payload(zmq::message_t& m) {
  if (m.size() < detail::adopt_min_bytes) return copy_bytes(m.data(), m.size());  // decode frames
  auto* held = new zmq::message_t(std::move(m));
  return adopt_bytes(held->data(), held->size(), [held] { delete held; });
}

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

// Sets a connect outcome once; later outcomes (a late pong after a timeout) are ignored.
void settle(std::promise<std::string>& p, std::string outcome) {
  try {
    p.set_value(std::move(outcome));
  } catch (const std::future_error&) {
  }
}

void set_common_options(zmq::socket_t& s) {
  s.set(zmq::sockopt::linger, 0);
  // Unbounded queues: flow is bounded by the callers' windows; HWM drops would lose replies.
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  // A peer sending more than this is disconnected by ZeroMQ before the message is buffered.
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(max_message_bytes));
}

// One channel's state, shared by the channel object (caller threads) and the I/O thread.
struct channel_state {
  uint64_t id = 0;
  std::string address;
  pending_table pending;
  std::atomic<bool> down{false};  // peer disconnected: requests fail at once
};

// I/O-thread-only per-channel sockets.
struct dealer {
  std::shared_ptr<channel_state> state;
  zmq::socket_t socket;
  zmq::socket_t monitor;  // PAIR receiving the DEALER's connect/disconnect events
};

class zmq_engine : public std::enable_shared_from_this<zmq_engine> {
 public:
  zmq_engine() : context_(1) {}
  ~zmq_engine() { stop(); }

  void start() {
    if (queue_.fd() < 0) throw std::runtime_error("zmq transport: eventfd failed");
    thread_ = std::thread([this] { run(); });
  }

  // Stops the I/O thread; it fails every pending request and closes every socket first.
  void stop() {
    if (stopping_.exchange(true)) return;
    queue_.push({});
    if (thread_.joinable()) thread_.join();
  }

  /// Runs `task` on the I/O thread: inline when already there, else queued. Returns false
  /// once stopped (the task is dropped).
  bool run_on_io(std::function<void()> task) {
    if (std::this_thread::get_id() == io_thread_id_) {
      task();
      return true;
    }
    if (stopping_) return false;
    queue_.push(std::move(task));
    return true;
  }

  void listen(const std::string& address, request_handler handler);
  /// Requests bigger than `max_bytes` are refused by the router (set before listen()).
  void limit_requests(size_t max_bytes) { request_limit_ = max_bytes; }
  std::shared_ptr<channel_state> open_channel(const std::string& address, int timeout_ms);
  void send_request(const std::shared_ptr<channel_state>& ch, bytes message, reply_callback cb);
  void close_channel(uint64_t id) {
    run_on_io([this, id] {
      dealers_.erase(id);
      items_dirty_ = true;
    });
  }
  void send_reply(const std::string& identity, uint64_t id, bytes message);
  [[nodiscard]] std::string listen_address() const {
    std::lock_guard lock(address_mutex_);
    return bound_address_;
  }

 private:
  void run();
  /// Sleeps in poll() on the sockets' descriptors, with io_mutex_ released, until one may have
  /// news, a task is queued or `wait` has passed (-1: no limit).
  void sleep_on_descriptors(std::unique_lock<std::mutex>& io, std::chrono::milliseconds wait);
  /// Runs `send` (one socket's sends; it returns the socket, or null) on the I/O thread, or on
  /// this thread when it is at the I/O thread's priority and finds it asleep. False once stopped
  /// (`send` is dropped).
  bool send_on(std::function<zmq::socket_t*()> send);
  void rebuild_items();
  void on_router_readable();
  void on_dealer_readable(dealer& d);
  void on_monitor_readable(dealer& d);
  void on_router_monitor_readable();
  void resume_accepting();
  void shutdown_io();

  zmq::context_t context_;
  command_queue<std::function<void()>> queue_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::atomic<std::thread::id> io_thread_id_{};
  std::atomic<int> io_nice_{0};  // the I/O thread's nice value
  // The I/O thread holds it except while it sleeps in poll(): another thread holding it may use
  // the sockets (ZeroMQ allows a socket to change threads across a full memory barrier).
  std::mutex io_mutex_;
  mutable std::mutex address_mutex_;
  std::string bound_address_;
  std::atomic<uint64_t> next_channel_id_{1};
  std::atomic<size_t> request_limit_{max_message_bytes};  // the router's message cap
  // -- I/O thread only --
  std::unique_ptr<zmq::socket_t> router_;
  zmq::socket_t router_monitor_;  // PAIR receiving the router's failed accepts
  bool accept_paused_ = false;    // the listener is closed until resume_accept_at_
  std::chrono::steady_clock::time_point resume_accept_at_;
  uint64_t accept_backoffs_ = 0, failed_rebinds_ = 0;  // (each logged once per process)
  request_handler handler_;
  std::unordered_map<uint64_t, dealer> dealers_;
  std::vector<zmq::pollitem_t> items_;
  std::vector<pollfd> item_fds_;  // items_' descriptors (a ZeroMQ socket's ZMQ_FD), for sleeping
  std::vector<std::function<void()>> item_actions_;
  bool items_dirty_ = true;
};

class zmq_reply : public reply_handle {
 public:
  zmq_reply(std::weak_ptr<zmq_engine> engine, std::string identity, uint64_t id)
      : engine_(std::move(engine)), identity_(std::move(identity)), id_(id) {}
  void send(bytes message) override {
    if (sent_.exchange(true)) return;
    if (auto e = engine_.lock()) e->send_reply(identity_, id_, std::move(message));
  }

 private:
  std::weak_ptr<zmq_engine> engine_;
  std::string identity_;
  uint64_t id_;
  std::atomic<bool> sent_{false};
};

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
// libzmq's own I/O thread pays the next (as ucx_engine::post). Threads below the I/O thread's
// priority hand over (below_io_priority), and so does one that finds the I/O thread awake.
bool zmq_engine::send_on(std::function<zmq::socket_t*()> send) {
  if (std::this_thread::get_id() != io_thread_id_ &&
      !below_io_priority(io_nice_.load(std::memory_order_relaxed))) {
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

void zmq_engine::rebuild_items() {
  items_.clear();
  item_actions_.clear();
  items_.push_back({nullptr, queue_.fd(), ZMQ_POLLIN, 0});
  item_actions_.emplace_back([this] {
    queue_.drain_wakeups();
    for (auto& task : queue_.take_all()) {
      if (task) task();
    }
  });
  if (router_) {
    items_.push_back({router_->handle(), 0, ZMQ_POLLIN, 0});
    item_actions_.emplace_back([this] { on_router_readable(); });
    items_.push_back({router_monitor_.handle(), 0, ZMQ_POLLIN, 0});
    item_actions_.emplace_back([this] { on_router_monitor_readable(); });
  }
  for (auto& [id, d] : dealers_) {
    items_.push_back({d.socket.handle(), 0, ZMQ_POLLIN, 0});
    item_actions_.emplace_back([this, id = id] {
      if (auto it = dealers_.find(id); it != dealers_.end()) on_dealer_readable(it->second);
    });
    items_.push_back({d.monitor.handle(), 0, ZMQ_POLLIN, 0});
    item_actions_.emplace_back([this, id = id] {
      if (auto it = dealers_.find(id); it != dealers_.end()) on_monitor_readable(it->second);
    });
  }
  item_fds_.clear();
  for (const auto& item : items_) {
    int fd = item.fd;
    if (item.socket) {
      size_t size = sizeof fd;
      zmq_getsockopt(item.socket, ZMQ_FD, &fd, &size);
    }
    item_fds_.push_back({fd, POLLIN, 0});
  }
  items_dirty_ = false;
}

void zmq_engine::run() {
  pthread_setname_np(pthread_self(), "xmesh.zmq");  // for ps, top and the tests
  io_thread_id_ = std::this_thread::get_id();
  io_nice_ = thread_nice();
  std::unique_lock io(io_mutex_);
  while (!stopping_) {
    if (items_dirty_) rebuild_items();
    auto wait = std::chrono::milliseconds(-1);
    if (accept_paused_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          resume_accept_at_ - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        resume_accepting();
        continue;
      }
      wait = left;
    }
    try {
      // What is there already (a ZeroMQ socket tells only when asked); else sleep unlocked.
      if (zmq::poll(items_.data(), items_.size(), std::chrono::milliseconds(0)) == 0) {
        sleep_on_descriptors(io, wait);
        continue;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      break;  // context terminated
    }
    // NOTE: actions only mark the socket set dirty; items_ is rebuilt before the next poll and
    // the actions look their dealer up by id, so one closed meanwhile is skipped.
    for (size_t i = 0; i < items_.size() && !stopping_; ++i) {
      if (items_[i].revents & ZMQ_POLLIN) item_actions_[i]();
    }
  }
  shutdown_io();
}

void zmq_engine::sleep_on_descriptors(std::unique_lock<std::mutex>& io,
                                      std::chrono::milliseconds wait) {
  for (auto& f : item_fds_) f.revents = 0;
  io.unlock();  // other threads may send meanwhile (send_on)
  ::poll(item_fds_.data(), item_fds_.size(), static_cast<int>(wait.count()));
  io.lock();
}

void zmq_engine::on_router_readable() {
  for (;;) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(*router_, std::back_inserter(parts), zmq::recv_flags::dontwait))
      return;
    msg_type t;
    uint64_t id;
    if (parts.size() < 2 || !read_envelope(parts[1], t, id)) continue;  // not ours: drop
    std::string identity = parts[0].to_string();
    if (t == msg_type::ping && parts.size() == 2) {
      router_->send(zmq::buffer(identity), zmq::send_flags::sndmore);
      router_->send(make_envelope(msg_type::pong, id), zmq::send_flags::dontwait);
    } else if (t == msg_type::request && parts.size() == 3 && handler_) {
      auto reply = std::make_shared<zmq_reply>(weak_from_this(), std::move(identity), id);
      invoke_handler(handler_, take_payload(parts[2]), std::move(reply));
    }
  }
}

void zmq_engine::on_router_monitor_readable() {
  for (;;) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(router_monitor_, std::back_inserter(parts), zmq::recv_flags::dontwait))
      return;
    if (parts.empty() || parts[0].size() < 6) continue;
    uint16_t event;
    int32_t error;
    std::memcpy(&event, parts[0].data(), sizeof event);
    std::memcpy(&error, static_cast<const char*>(parts[0].data()) + 2, sizeof error);
    const bool out_of_descriptors = error == EMFILE || error == ENFILE;
    if (event != ZMQ_EVENT_ACCEPT_FAILED || !out_of_descriptors || accept_paused_) continue;
    // Out of descriptors: close the listener (connections made stay) and open it again later.
    try {
      router_->unbind(bound_address_);
    } catch (const zmq::error_t&) {
      continue;
    }
    ++accept_backoffs_;
    if (accept_backoffs_ == 1)
      std::fprintf(stderr, "zmq transport: out of descriptors: accepting on %s again in 100 ms\n",
                   bound_address_.c_str());
    accept_paused_ = true;
    resume_accept_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  }
}

// Whether `n` more descriptors can be opened now. libzmq asserts (aborts the process) when it
// cannot open one while binding, so the listener comes back only with room to spare.
bool spare_descriptors(int n) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    fds.push_back(fd);
  }
  for (int fd : fds) ::close(fd);
  return static_cast<int>(fds.size()) == n;
}

void zmq_engine::resume_accepting() {
  if (!spare_descriptors(16)) {
    resume_accept_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    return;
  }
  try {
    router_->bind(bound_address_);
    accept_paused_ = false;
  } catch (const zmq::error_t& e) {  // the port was taken meanwhile: say so, try again later
    if (++failed_rebinds_ == 1)
      std::fprintf(stderr, "zmq transport: cannot listen on %s again (%s); retrying\n",
                   bound_address_.c_str(), e.what());
    resume_accept_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  }
}

void zmq_engine::on_dealer_readable(dealer& d) {
  auto st = d.state;  // keeps the state alive while callbacks may close the channel
  for (;;) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(d.socket, std::back_inserter(parts), zmq::recv_flags::dontwait))
      return;
    msg_type t;
    uint64_t id;
    if (parts.empty() || !read_envelope(parts[0], t, id)) continue;
    if (t == msg_type::pong && parts.size() == 1) {
      st->down = false;
      if (auto cb = st->pending.take(id)) cb({}, {});
    } else if (t == msg_type::reply && parts.size() == 2) {
      if (auto cb = st->pending.take(id)) cb(take_payload(parts[1]), {});
    }
    if (!dealers_.count(st->id)) return;  // a callback closed the channel
  }
}

void zmq_engine::on_monitor_readable(dealer& d) {
  auto st = d.state;
  for (;;) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(d.monitor, std::back_inserter(parts), zmq::recv_flags::dontwait))
      return;
    if (parts.empty() || parts[0].size() < 6) continue;
    uint16_t event;
    std::memcpy(&event, parts[0].data(), sizeof event);
    if (event == ZMQ_EVENT_DISCONNECTED) {
      st->down = true;
      st->pending.fail_all("peer " + st->address + " disconnected", false);
    } else if (event == ZMQ_EVENT_CONNECTED) {
      st->down = false;
    }
    if (!dealers_.count(st->id)) return;
  }
}

void zmq_engine::shutdown_io() {
  for (auto& task : queue_.take_all()) {
    if (task) task();  // e.g. a listen() caller waiting for its answer
  }
  for (auto& [id, d] : dealers_) d.state->pending.fail_all("zmq endpoint shut down", true);
  dealers_.clear();
  if (router_) {
    router_monitor_.close();
    router_.reset();
    // The ipc socket file is ours: remove it so a later listener can bind the same path.
    std::lock_guard lock(address_mutex_);
    if (bound_address_.rfind("ipc://", 0) == 0) ::unlink(bound_address_.c_str() + 6);
  }
  handler_ = nullptr;
}

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

std::unique_ptr<endpoint> make_zmq_endpoint() { return std::make_unique<zmq_endpoint>(); }

}  // namespace xmesh::transport
