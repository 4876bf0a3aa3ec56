// The ZeroMQ engine's I/O thread: its loop, what it reads, and its shutdown (zmq_engine.hpp).
#include "transport/zmq/zmq_engine.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <zmq_addon.hpp>

#include "transport/io_priority.hpp"

namespace xmesh::transport::zeromq {

namespace {
constexpr size_t envelope_bytes = 9;  // type u8 + request id u64
}  // namespace

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

zmq::message_t adopt(bytes payload) {
  if (payload.empty()) return zmq::message_t();
  auto* owned = new bytes(std::move(payload));
  return zmq::message_t(
      owned->data(), owned->size(), [](void*, void* hint) { delete static_cast<bytes*>(hint); },
      owned);
}

bytes take_payload(zmq::message_t& m) {
  if (m.size() < detail::adopt_min_bytes) return copy_bytes(m.data(), m.size());  // decode frames
  auto* held = new zmq::message_t(std::move(m));
  return adopt_bytes(held->data(), held->size(), [held] { delete held; });
}

namespace {

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

}  // namespace

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
  io_thread_id_ = std::this_thread::get_id();
  enter_io_thread("xmesh.zmq");
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

}  // namespace xmesh::transport::zeromq
