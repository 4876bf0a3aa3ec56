#include "transport/local/local_endpoint.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>

#include "transport/executor.hpp"
#include "transport/pending.hpp"

namespace xmesh::transport {
namespace {

// NOTE: tasks posted to an executor hold only weak references to objects that own an
// executor, so a queued task never keeps its own executor alive (no cycles, no self-join).

// One channel's side: its pending requests and where its replies run.
struct client_state {
  pending_table pending;
  std::weak_ptr<executor> exec;  // the connecting endpoint's receive thread
};

// Runs `task` on `exec` when it still runs, else on the calling thread (never dropped).
void post_or_run(const std::weak_ptr<executor>& exec, std::function<void()> task) {
  if (auto e = exec.lock(); e && e->post(task)) return;
  task();
}

class local_reply : public reply_handle {
 public:
  local_reply(std::weak_ptr<client_state> client, uint64_t id)
      : client_(std::move(client)), id_(id) {}
  void send(bytes message) override {
    if (sent_.exchange(true)) return;  // once
    auto client = client_.lock();
    if (!client) return;  // the channel is gone: nobody waits for this reply
    post_or_run(client->exec, [client, id = id_, m = std::move(message)]() mutable {
      if (auto cb = client->pending.take(id)) cb(std::move(m), {});
    });
  }

 private:
  std::weak_ptr<client_state> client_;
  uint64_t id_;
  std::atomic<bool> sent_{false};
};

// A listener: runs its handler on the listening endpoint's receive thread.
struct server {
  std::string name;
  request_handler handler;
  std::weak_ptr<executor> exec;
  std::mutex mutex;
  std::vector<std::weak_ptr<client_state>> clients;  // to fail their requests at shutdown
  bool down = false;
};

std::mutex registry_mutex;
std::map<std::string, std::weak_ptr<server>>& registry() {
  static std::map<std::string, std::weak_ptr<server>> r;
  return r;
}

std::string local_name(const std::string& address) {
  constexpr std::string_view scheme = "local://";
  if (address.rfind(scheme, 0) != 0 || address.size() == scheme.size())
    throw std::invalid_argument("local transport address must be local://NAME, got '" + address +
                                "'");
  return address.substr(scheme.size());
}

class local_channel : public channel {
 public:
  local_channel(std::shared_ptr<executor> exec, std::weak_ptr<server> srv, std::string address)
      : exec_(std::move(exec)),
        server_(std::move(srv)),
        address_(std::move(address)),
        state_(std::make_shared<client_state>()) {
    state_->exec = exec_;
  }
  ~local_channel() override {
    state_->pending.fail_all("channel to " + address_ + " closed", true);
  }

  /// The shared state the listener keeps a weak reference to.
  [[nodiscard]] std::shared_ptr<client_state> state() const { return state_; }

  void request(bytes message, reply_callback on_reply) override {
    uint64_t id = state_->pending.add(std::move(on_reply));
    if (id == 0) return fail_now(std::move(on_reply), state_->pending.close_reason());
    auto srv = server_.lock();
    auto srv_exec = srv ? srv->exec.lock() : nullptr;
    auto reply = std::make_shared<local_reply>(state_, id);
    std::weak_ptr<server> weak = srv;
    bool queued = srv_exec && srv_exec->post([weak, reply, m = std::move(message)]() mutable {
      if (auto s = weak.lock()) invoke_handler(s->handler, std::move(m), std::move(reply));
    });
    if (!queued) {
      if (auto cb = state_->pending.take(id))
        fail_now(std::move(cb), "peer " + address_ + " is gone");
    }
  }

 private:
  void fail_now(reply_callback cb, std::string error) {
    post_or_run(exec_, [cb = std::move(cb), e = std::move(error)] { cb({}, e); });
  }

  std::shared_ptr<executor> exec_;
  std::weak_ptr<server> server_;
  std::string address_;
  std::shared_ptr<client_state> state_;
};

class local_endpoint : public endpoint {
 public:
  local_endpoint() : exec_(std::make_shared<executor>()) {}
  ~local_endpoint() override {
    if (server_) shutdown_server();
    exec_->stop();
  }

  void listen(const std::string& address, request_handler handler) override {
    std::string name = local_name(address);
    if (server_) throw std::runtime_error("local endpoint already listens on " + address_);
    auto srv = std::make_shared<server>();
    srv->name = name;
    srv->handler = std::move(handler);
    srv->exec = exec_;
    std::lock_guard lock(registry_mutex);
    auto& slot = registry()[name];
    if (!slot.expired()) throw std::runtime_error("address " + address + " is already in use");
    slot = srv;
    server_ = std::move(srv);
    address_ = address;
  }

  std::unique_ptr<channel> connect(const std::string& address, int timeout_ms) override {
    std::string name = local_name(address);
    std::shared_ptr<server> srv;
    {
      std::lock_guard lock(registry_mutex);
      auto it = registry().find(name);
      if (it != registry().end()) srv = it->second.lock();
    }
    if (!srv) {
      throw std::runtime_error("cannot reach " + address + " within " + std::to_string(timeout_ms) +
                               " ms: no such local listener");
    }
    auto ch = std::make_unique<local_channel>(exec_, srv, address);
    std::lock_guard lock(srv->mutex);
    std::erase_if(srv->clients, [](auto& w) { return w.expired(); });
    srv->clients.push_back(ch->state());
    return ch;
  }

  [[nodiscard]] std::string name() const override { return "local"; }
  [[nodiscard]] std::string listen_address() const override { return address_; }

 private:
  // Unregisters the listener and fails every request its clients still wait for.
  void shutdown_server() {
    {
      std::lock_guard lock(registry_mutex);
      auto it = registry().find(server_->name);
      if (it != registry().end() && it->second.lock() == server_) registry().erase(it);
    }
    std::vector<std::weak_ptr<client_state>> clients;
    {
      std::lock_guard lock(server_->mutex);
      clients.swap(server_->clients);
    }
    const std::string why = "peer " + address_ + " shut down";
    for (auto& w : clients) {
      if (auto c = w.lock()) c->pending.fail_all(why, true);
    }
    server_.reset();
  }

  std::shared_ptr<executor> exec_;
  std::shared_ptr<server> server_;
  std::string address_;
};

}  // namespace

std::unique_ptr<endpoint> make_local_endpoint() { return std::make_unique<local_endpoint>(); }

}  // namespace xmesh::transport
