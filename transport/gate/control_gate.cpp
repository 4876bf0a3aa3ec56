#include "transport/gate/control_gate.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "transport/gate/listener.hpp"

namespace xmesh::transport {

using clock_type = std::chrono::steady_clock;

bool message_guard::feed(const uint8_t* data, size_t n) {
  while (n > 0) {
    if (left_ > 0) {
      const size_t take = std::min<uint64_t>(n, left_);
      left_ -= take;
      data += take;
      n -= take;
      if (left_ == 0) ++messages_;
      continue;
    }
    const size_t take = std::min(n, header_bytes - have_);
    std::memcpy(header_ + have_, data, take);
    have_ += take;
    data += take;
    n -= take;
    if (have_ < header_bytes) break;
    have_ = 0;
    announced_ = (uint32_t{header_[4]} << 24) | (uint32_t{header_[5]} << 16) |
                 (uint32_t{header_[6]} << 8) | uint32_t{header_[7]};
    if (announced_ > cap_) return false;
    if (announced_ == 0)
      ++messages_;
    else
      left_ = announced_;
  }
  return true;
}

struct control_gate::state {
  std::string owner;
  gate_limits limits;
  std::shared_ptr<SSL_CTX> server_ctx, client_ctx;  // null: plain connections
  gate_counters counters;
  std::atomic<bool> stopping{false};
  std::mutex mu;  // guards what follows
  int pending = 0;
  int open = 0;  // admitted connections still open (counters.admitted counts them all)
  std::map<std::string, int> pending_by_host;
  std::map<std::string, std::string> last_error;  // by "host:port" dialled
  uint64_t refusals_logged = 0;

  // Connection threads, each joined once it has finished (when the next one starts) and all of
  // them when the gate ends, so none outlives the gate, not even its exit: OpenSSL frees a
  // thread's state as the thread ends, and a detached one still doing so while the process
  // exited had it freed twice (the command line's clients aborted now and then).
  std::mutex workers_mu;
  std::vector<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> workers;

  /// Runs `work` on a thread of its own; throws std::system_error when none can be made.
  void start(std::function<void()> work) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard lock(workers_mu);
    std::erase_if(workers, [](auto& w) {
      if (!*w.second) return false;
      w.first.join();
      return true;
    });
    std::thread t([work = std::move(work), done] {
      work();
      *done = true;
    });
    workers.emplace_back(std::move(t), std::move(done));
  }
  /// Joins every connection thread (they notice `stopping` within a poll period or their
  /// current deadline).
  void join_workers() {
    std::vector<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> all;
    {
      std::lock_guard lock(workers_mu);
      all.swap(workers);
    }
    for (auto& w : all) w.first.join();
  }

  // Refusals are logged, but a flood is not: the first 20, then every 1000th.
  void log_refusal(const std::string& peer, const std::string& why) {
    uint64_t n;
    {
      std::lock_guard lock(mu);
      n = ++refusals_logged;
    }
    if (n <= 20 || n % 1000 == 0)
      std::fprintf(stderr, "%s: refused a control connection from %s: %s%s\n", owner.c_str(),
                   peer.c_str(), why.c_str(),
                   n == 20 ? " (further refusals: every 1000th is logged)" : "");
  }
};

namespace {

int ms_left(clock_type::time_point deadline) {
  if (deadline == clock_type::time_point::max()) return 1 << 30;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

std::string errno_text(int e) { return std::strerror(e); }

std::string host_of(const std::string& address) { return address.substr(0, address.rfind(':')); }

// A non-blocking connection to host:port made before `deadline`, or -1 with `why`.
int connect_to(const std::string& host, uint16_t port, clock_type::time_point deadline,
               std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int r = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); r != 0) {
    why = std::string("cannot resolve ") + host + ": " + gai_strerror(r);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = errno_text(errno);
      continue;
    }
    int r = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      r = ::poll(&p, 1, ms_left(deadline)) == 1 ? 0 : -1;
      int err = ETIMEDOUT;
      socklen_t len = sizeof err;
      if (r == 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      errno = err;
      r = err == 0 ? 0 : -1;
    }
    if (r != 0) {
      why = errno_text(errno);
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

std::string tls_failure(SSL* ssl, int code) {
  long verify = SSL_get_verify_result(ssl);
  if (verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
      verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
      verify == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
      verify == X509_V_ERR_CERT_SIGNATURE_FAILURE)
    return "its certificate is not one of this cluster's (" +
           std::string(X509_verify_cert_error_string(verify)) + ")";
  if (verify != X509_V_OK)
    return std::string("certificate refused: ") + X509_verify_cert_error_string(verify);
  char text[256] = "";
  if (auto e = ERR_get_error()) ERR_error_string_n(e, text, sizeof text);
  ERR_clear_error();
  if (*text) return text;
  return code == SSL_ERROR_ZERO_RETURN || code == SSL_ERROR_SYSCALL
             ? "the peer closed the connection"
             : "TLS error";
}

// Waits until `fd` is ready for `events`; false when the gate stops, the fd fails or the peer
// has not moved for a minute.
bool wait_for(const control_gate::state& s, int fd, short events) {
  for (int waited = 0; waited < 60000 && !s.stopping; waited += 200) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, 200);
    if (r < 0 && errno != EINTR) return false;
    if (r > 0) return (p.revents & (events | POLLHUP)) != 0 && !(p.revents & POLLNVAL);
  }
  return false;
}

bool tls_handshake(const control_gate::state& s, SSL* ssl, int fd, clock_type::time_point deadline,
                   std::string& why) {
  for (;;) {
    int r = SSL_do_handshake(ssl);
    if (r == 1) return true;
    int code = SSL_get_error(ssl, r);
    short events = code == SSL_ERROR_WANT_READ    ? POLLIN
                   : code == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                  : 0;
    if (events == 0) {
      why = "TLS handshake failed: " + tls_failure(ssl, code);
      return false;
    }
    const int left = ms_left(deadline);
    if (left == 0 || s.stopping) {
      why =
          "no TLS handshake within " + std::to_string(s.limits.handshake_deadline.count()) + " ms";
      return false;
    }
    pollfd p{fd, events, 0};
    ::poll(&p, 1, std::min(left, 200));
  }
}

std::string peer_name(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  char cn[256] = "";
  if (cert) X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  return cn;
}

// Both ends of one admitted connection: the network side (TLS when `ssl`) and the loopback side.
struct link {
  int net = -1;
  SSL* ssl = nullptr;
  bool secured = false;  // the handshake completed (only then may a TLS close be sent)
  int plain = -1;
  ~link() {
    if (ssl) {
      if (secured) SSL_shutdown(ssl);  // best effort: the socket is non-blocking
      SSL_free(ssl);
    }
    if (net >= 0) ::close(net);
    if (plain >= 0) ::close(plain);
  }
};

bool send_all(const control_gate::state& s, int fd, SSL* ssl, const uint8_t* p, size_t n) {
  while (n > 0) {
    short wait = 0;
    if (ssl) {
      size_t done = 0;
      int r = SSL_write_ex(ssl, p, n, &done);
      if (r == 1) {
        p += done;
        n -= done;
        continue;
      }
      int code = SSL_get_error(ssl, r);
      if (code == SSL_ERROR_WANT_WRITE)
        wait = POLLOUT;
      else if (code == SSL_ERROR_WANT_READ)
        wait = POLLIN;
      else
        return false;
    } else {
      ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w > 0) {
        p += w;
        n -= static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
      wait = POLLOUT;
    }
    if (!wait_for(s, fd, wait)) return false;
  }
  return true;
}

enum class ended { closed, stopping, deadline, oversized };

// Moves bytes both ways until a side closes. `guard` (on a listener's connections) checks what
// the peer sends; `on_first` runs once its first whole message has passed, before `deadline`.
ended pump(const control_gate::state& s, link& l, message_guard* guard,
           clock_type::time_point deadline, const std::function<void()>& on_first) {
  uint8_t buf[16384];
  bool first_seen = guard == nullptr;
  for (;;) {
    pollfd p[2] = {{l.net, POLLIN, 0}, {l.plain, POLLIN, 0}};
    const bool buffered = l.ssl && SSL_pending(l.ssl) > 0;
    if (!buffered && ::poll(p, 2, first_seen ? 200 : std::min(200, ms_left(deadline))) < 0 &&
        errno != EINTR)
      return ended::closed;
    if (s.stopping) return ended::stopping;
    if (buffered || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      for (;;) {
        size_t got = 0;
        if (l.ssl) {
          int r = SSL_read_ex(l.ssl, buf, sizeof buf, &got);
          if (r != 1) {
            int code = SSL_get_error(l.ssl, r);
            if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) break;
            return ended::closed;
          }
        } else {
          ssize_t r = ::recv(l.net, buf, sizeof buf, 0);
          if (r < 0 && errno == EINTR) continue;
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          if (r <= 0) return ended::closed;
          got = static_cast<size_t>(r);
        }
        if (guard && !guard->feed(buf, got)) return ended::oversized;
        if (!send_all(s, l.plain, nullptr, buf, got)) return ended::closed;
        if (!first_seen && guard->messages() > 0) {
          first_seen = true;
          on_first();
        }
      }
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = ::recv(l.plain, buf, sizeof buf, 0);
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
        return ended::closed;
      if (r > 0 && !send_all(s, l.net, l.ssl, buf, static_cast<size_t>(r))) return ended::closed;
    }
    if (!first_seen && ms_left(deadline) == 0) return ended::deadline;
  }
}

// One peer's connection to the public port: handshake, then the pipe to CAF on loopback.
// Whether the peer sends its first bytes within a second (a member's client does at once; a
// stranger holding the connection gives its handshake slot back early).
bool speaks_soon(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 1000) == 1;
}

void serve_connection(std::shared_ptr<control_gate::state> s, int fd, std::string peer,
                      std::function<void(int)> admit) {
  const auto deadline = clock_type::now() + s->limits.handshake_deadline;
  const std::string host = host_of(peer);
  bool pending = true;
  auto settle = [&](bool admit) {  // leaves the handshake slot, once
    std::lock_guard lock(s->mu);
    if (pending) {
      --s->pending;
      if (--s->pending_by_host[host] == 0) s->pending_by_host.erase(host);
      pending = false;
      if (admit) ++s->open;
    } else if (!admit) {
      --s->open;
    }
  };
  link l;
  l.net = fd;
  std::string why;
  auto refuse = [&](const std::string& reason) {
    settle(false);
    ++s->counters.refused_handshake;
    if (!s->stopping) s->log_refusal(peer, reason);
  };
  if (!speaks_soon(fd)) return refuse("sent nothing within 1 s");
  if (s->server_ctx) {
    l.ssl = SSL_new(s->server_ctx.get());
    if (!l.ssl) return refuse("no TLS session (out of memory)");
    SSL_set_fd(l.ssl, fd);
    SSL_set_accept_state(l.ssl);
    if (!tls_handshake(*s, l.ssl, fd, deadline, why)) return refuse(why);
    l.secured = true;
  }
  int pair[2];
  if (s->stopping) return settle(false);
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    settle(false);
    ++s->counters.refused_capacity;
    return s->log_refusal(peer, "no socket pair (" + errno_text(errno) + ")");
  }
  l.plain = pair[1];
  ::fcntl(l.plain, F_SETFL, ::fcntl(l.plain, F_GETFL) | O_NONBLOCK);  // ours; admit's stays as is
  admit(pair[0]);
  message_guard guard(s->limits.max_message_bytes);
  auto end = pump(*s, l, &guard, deadline, [&] {
    settle(true);
    ++s->counters.admitted;
  });
  settle(false);  // the handshake slot, or the admitted one
  if (end == ended::oversized) {
    ++s->counters.refused_oversized;
    s->log_refusal(peer, "announced a message of " + std::to_string(guard.announced()) +
                             " bytes (the cap is " + std::to_string(s->limits.max_message_bytes) +
                             ")");
  } else if (end == ended::deadline) {
    ++s->counters.refused_handshake;
    s->log_refusal(peer, "no handshake within " +
                             std::to_string(s->limits.handshake_deadline.count()) + " ms");
  }
}

// One dialled connection: TLS to host:port (the peer's name checked), piped to `fd`.
void dial_connection(std::shared_ptr<control_gate::state> s, int fd, std::string host,
                     uint16_t port, std::string peer) {
  const auto deadline = clock_type::now() + s->limits.handshake_deadline;
  const std::string where = host + ":" + std::to_string(port);
  link l;
  l.plain = fd;
  std::string why;
  auto failed = [&](const std::string& reason) {
    std::lock_guard lock(s->mu);
    s->last_error[where] = reason;
  };
  l.net = connect_to(host, port, deadline, why);
  if (l.net < 0) return failed("cannot connect: " + why);
  if (s->client_ctx) {
    l.ssl = SSL_new(s->client_ctx.get());
    if (!l.ssl) return failed("no TLS session (out of memory)");
    SSL_set_fd(l.ssl, l.net);
    SSL_set_connect_state(l.ssl);
    if (!tls_handshake(*s, l.ssl, l.net, deadline, why)) return failed(why);
    l.secured = true;
    const std::string name = peer_name(l.ssl);
    if (!peer.empty() && name != peer)
      return failed("its certificate names '" + name + "', not '" + peer + "'");
  }
  {
    std::lock_guard lock(s->mu);
    s->last_error.erase(where);
  }
  // What the peer sends is capped here too (a joining node accepts any member's certificate).
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  message_guard guard(s->limits.max_message_bytes);
  if (pump(*s, l, &guard, clock_type::time_point::max(), [] {}) == ended::oversized) {
    ++s->counters.refused_oversized;
    s->log_refusal(where, "announced a message of " + std::to_string(guard.announced()) +
                              " bytes (the cap is " + std::to_string(s->limits.max_message_bytes) +
                              ")");
  }
}

}  // namespace

control_gate::control_gate(std::string owner, std::optional<tls_identity> tls, gate_limits limits)
    : state_(std::make_shared<state>()) {
  // OpenSSL writes with write(2): a peer gone mid-handshake must not end the process by SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  state_->owner = std::move(owner);
  state_->limits = limits;
  if (tls) {
    state_->server_ctx = make_tls_context(*tls, true);
    state_->client_ctx = make_tls_context(*tls, false);
  }
}

control_gate::~control_gate() {
  state_->stopping = true;
  std::lock_guard lock(setup_mu_);
  for (auto& t : listeners_) t.join();
  state_->join_workers();
}

bool control_gate::authenticated() const { return state_->server_ctx != nullptr; }

const gate_counters& control_gate::counters() const { return state_->counters; }

uint16_t control_gate::listen(const std::string& host, uint16_t port,
                              std::function<void(int)> admit) {
  std::lock_guard lock(setup_mu_);
  const int fd = listen_tcp(host, port);
  const uint16_t bound = bound_port(fd);
  auto s = state_;
  listeners_.emplace_back([s, fd, admit = std::move(admit)] {
    accept_until(
        fd, s->stopping, s->owner, s->counters.accept_backoffs,
        [&](int c, const sockaddr_storage& from) {
          const std::string peer = address_text(from);
          const std::string host = host_of(peer);
          {
            std::lock_guard lock(s->mu);
            const bool room = s->pending < s->limits.max_pending &&
                              s->pending_by_host[host] < s->limits.max_pending_per_host &&
                              s->pending + s->open < s->limits.max_connections;
            if (room) {
              ++s->pending;
              ++s->pending_by_host[host];
            } else {
              if (s->pending_by_host[host] == 0) s->pending_by_host.erase(host);
              ++s->counters.refused_capacity;
              ::close(c);
              c = -1;
            }
          }
          if (c < 0) return s->log_refusal(peer, "too many connections waiting or admitted");
          try {
            s->start([s, c, peer, admit] { serve_connection(s, c, peer, admit); });
          } catch (
              const std::system_error&) {  // out of threads: the peer is refused like any other
            std::lock_guard lock(s->mu);
            --s->pending;
            if (--s->pending_by_host[host] == 0) s->pending_by_host.erase(host);
            ++s->counters.refused_capacity;
            ::close(c);
          }
        });
  });
  return bound;
}

void control_gate::dial(int local, const std::string& host, uint16_t port,
                        const std::string& peer) {
  try {
    state_->start(
        [s = state_, local, host, port, peer] { dial_connection(s, local, host, port, peer); });
  } catch (const std::system_error& e) {
    {
      std::lock_guard lock(state_->mu);
      state_->last_error[host + ":" + std::to_string(port)] = e.what();
    }
    ::close(local);
  }
}

std::string control_gate::last_error(const std::string& host, uint16_t port) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->last_error.find(host + ":" + std::to_string(port));
  return it == state_->last_error.end() ? "" : it->second;
}

}  // namespace xmesh::transport
