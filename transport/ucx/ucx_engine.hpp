// The UCX engine: one progress thread that owns the ucp context, worker and endpoints.
// Internal to transport/ucx; other threads talk to it through run_on_io() and post().
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "transport/pending.hpp"
#include "transport/spin_policy.hpp"
#include "transport/ucx/ucx_util.hpp"

namespace xmesh::transport::ucx {

// Active message ids; the header of each is an am_header.
enum : unsigned { am_request = 11, am_reply = 12, am_ping = 13, am_pong = 14 };

// Names the client channel and its request; the server echoes it back in the reply.
struct am_header {
  uint64_t channel_id;
  uint64_t request_id;
};

struct channel_state {
  uint64_t id = 0;
  std::string address;
  pending_table pending;
};

// One in-flight ucp_am_send_nbx: owns the bytes and header until UCX is done with them.
struct send_op {
  class ucx_engine* engine;
  bytes data;
  am_header header{};
};

// One rendezvous receive: the buffer UCX fills, and where the message goes once complete.
struct recv_op {
  class ucx_engine* engine;
  unsigned am_id;
  uint64_t from_conn;  // server side: the accepted connection it came on
  am_header header;
  bytes data;
};

class ucx_engine : public std::enable_shared_from_this<ucx_engine> {
 public:
  /// Polling budget of the progress thread (XMESH_UCX_SPIN_US; 0 = always sleep).
  static constexpr long default_spin_us = 100;

  ucx_engine();
  ~ucx_engine() { stop(); }
  ucx_engine(const ucx_engine&) = delete;
  ucx_engine& operator=(const ucx_engine&) = delete;

  /// Stops the progress thread, which fails pending requests and closes every ep (FORCE).
  void stop();
  /// Runs `task` on the progress thread: inline when already there (never inside a UCX
  /// callback: callbacks only record work), else queued. False once stopped.
  bool run_on_io(std::function<void()> task);
  /// run_on_io() for a task that only posts UCX operations and leaves any callback to
  /// deferred_: while the progress thread sleeps, the calling thread runs it in its stead,
  /// whatever its priority (an expert node's compute thread too: enter_io_thread says why).
  bool post(std::function<void()> task);

  void listen(const std::string& address, request_handler handler);
  /// Requests bigger than `max_bytes` are dropped before a buffer is made for them.
  void limit_requests(size_t max_bytes) { request_limit_ = max_bytes; }
  std::shared_ptr<channel_state> open_channel(const std::string& address, int timeout_ms);
  void send_request(const std::shared_ptr<channel_state>& ch, bytes message, reply_callback cb);
  void close_channel(uint64_t id) {
    run_on_io([this, id] { drop_client(id); });
  }
  void send_reply(uint64_t conn, am_header h, bytes message) {
    post([this, conn, h, m = std::move(message)]() mutable {
      auto it = server_eps_.find(conn);
      if (it != server_eps_.end()) am_send(it->second, am_reply, h, std::move(m), false);
    });
  }
  [[nodiscard]] std::string listen_address() const {
    std::lock_guard lock(address_mutex_);
    return bound_address_;
  }

 private:
  struct ep_info {
    bool client;
    uint64_t id;  // channel id (client) or connection id (server)
  };
  struct client_ep {
    ucp_ep_h ep = nullptr;
    std::shared_ptr<channel_state> state;
  };

  void run();
  /// Polls the worker for up to `budget` before sleeping; true when work showed up.
  bool spin(spin_policy::duration budget);
  /// Sleeps in poll() until UCX or the queue has work, releasing `worker` meanwhile.
  void wait_for_events(std::unique_lock<std::mutex>& worker);
  void ensure_worker(const ucx_address& a);
  ucs_status_t am_send(ucp_ep_h ep, unsigned id, am_header h, bytes data, bool want_reply_ep);
  void progress();
  /// Runs the handlers and reply callbacks of what progress() received with `worker` released:
  /// they wake sessions and compute threads, and a woken thread that takes this one's core must
  /// find the worker free to post its own sends (it used to wait for this thread to run again).
  void run_ready(std::unique_lock<std::mutex>& worker);
  void start_rndv(void* desc, recv_op* op);
  ucp_ep_h create_ep(ucp_ep_params_t& p, bool client, uint64_t id);
  void close_ep(ucp_ep_h ep);
  void drop_client(uint64_t id);
  void on_ep_error(ucp_ep_h ep, ucs_status_t status);
  void deliver(unsigned am_id, uint64_t conn, am_header h, bytes data);
  ucs_status_t on_am(unsigned am_id, const void* header, size_t header_length, void* data,
                     size_t length, const ucp_am_recv_param_t* param);
  void shutdown_io();

  static ucs_status_t am_cb(void* arg, const void* header, size_t header_length, void* data,
                            size_t length, const ucp_am_recv_param_t* param);
  static void send_done(void* request, ucs_status_t status, void* user_data);
  static void rndv_done(void* request, ucs_status_t status, size_t length, void* user_data);
  static void ep_error_cb(void* arg, ucp_ep_h ep, ucs_status_t status);

  // -- any thread --
  command_queue<std::function<void()>> queue_;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> request_limit_{max_message_bytes};  // bigger requests are dropped unread
  // Held by the progress thread except while it sleeps; a thread that takes it meanwhile acts
  // as the progress thread (post). Guards everything under "progress thread only".
  std::mutex io_mutex_;
  static thread_local ucx_engine* acting_as_;  // the engine this thread acts for, if any
  std::atomic<uint64_t> next_channel_id_{1};
  mutable std::mutex address_mutex_;
  std::string bound_address_;
  std::thread thread_;
  // -- progress thread only --
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int worker_fd_ = -1;
  int64_t sends_in_flight_ = 0;  // posted and not completed: the progress thread must progress
  // Poll before sleeping only while events have been coming sooner than a wake-up costs.
  spin_policy spin_ = spin_policy::from_env("XMESH_UCX_SPIN_US", default_spin_us);
  request_handler handler_;
  std::unordered_map<uint64_t, client_ep> clients_;
  std::unordered_map<uint64_t, ucp_ep_h> server_eps_;
  std::unordered_map<ucp_ep_h, ep_info> ep_index_;
  uint64_t next_conn_id_ = 1;
  std::vector<std::function<void()>> deferred_;   // recorded by UCX callbacks, run after progress
  std::vector<std::function<void()>> ready_;      // deliveries, run with the worker released
  std::vector<std::pair<void*, recv_op*>> rndv_;  // data descriptors to receive after progress
  std::vector<void*> closing_;                    // ep close requests still in flight
  struct am_ctx {
    ucx_engine* engine;
    unsigned id;
  } am_ctx_[4] = {{this, am_request}, {this, am_reply}, {this, am_ping}, {this, am_pong}};
};

/// The server's answer path for one request: the connection it came on and its header.
class ucx_reply : public reply_handle {
 public:
  ucx_reply(std::weak_ptr<ucx_engine> engine, uint64_t conn, am_header h)
      : engine_(std::move(engine)), conn_(conn), header_(h) {}
  void send(bytes message) override {
    if (sent_.exchange(true)) return;
    if (auto e = engine_.lock()) e->send_reply(conn_, header_, std::move(message));
  }

 private:
  std::weak_ptr<ucx_engine> engine_;
  uint64_t conn_;
  am_header header_;
  std::atomic<bool> sent_{false};
};

}  // namespace xmesh::transport::ucx
