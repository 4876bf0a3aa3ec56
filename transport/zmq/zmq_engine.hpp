// The ZeroMQ engine: one I/O thread that owns every socket (a ROUTER listener, one DEALER per
// channel). Internal to transport/zmq: zmq_endpoint.cpp is the side other threads call, and
// zmq_engine.cpp the I/O thread's loop and what it reads.
#pragma once

#include <poll.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "transport/io_priority.hpp"
#include "transport/pending.hpp"
#include "transport/transport.hpp"

namespace xmesh::transport::zeromq {

// -- envelope: every message is [envelope, payload] (DEALER side) or [identity, envelope,
// payload] (ROUTER side) ---------------------------------------------------------------------
enum class msg_type : uint8_t { request = 1, reply = 2, ping = 3, pong = 4 };
zmq::message_t make_envelope(msg_type t, uint64_t id);
bool read_envelope(const zmq::message_t& m, msg_type& t, uint64_t& id);
/// Hands the vector's storage to ZeroMQ, which frees it when sent (no copy).
zmq::message_t adopt(bytes payload);
/// A received payload as bytes: large ones keep ZeroMQ's buffer (no copy), small ones are copied.
bytes take_payload(zmq::message_t& m);

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
  // libzmq's I/O thread is scheduled as ours (enter_io_thread); it starts with the first socket.
  zmq_engine() : context_(1) {
    zmq_ctx_set(context_.handle(), ZMQ_THREAD_SCHED_POLICY, io_thread_policy);
  }
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

  /// Runs `send` (one socket's sends; it returns the socket, or null) on the I/O thread, or on
  /// this thread when it is at the I/O thread's priority and finds it asleep. False once stopped
  /// (`send` is dropped).
  bool send_on(std::function<zmq::socket_t*()> send);

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

}  // namespace xmesh::transport::zeromq
