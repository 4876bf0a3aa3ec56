#include "transport/gate/text_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "transport/gate/listener.hpp"

namespace xmesh::transport {

struct text_server::state {
  std::string owner, path;
  std::function<std::string()> body;
  std::atomic<bool> stopping{false};
  std::atomic<int> serving{0};
  std::atomic<uint64_t> backoffs{0};
};

namespace {

constexpr int max_serving = 16;
constexpr size_t max_request = 8192;
using clock_type = std::chrono::steady_clock;

int ms_until(clock_type::time_point t) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - clock_type::now()).count();
  return static_cast<int>(std::max<int64_t>(0, left));
}

// The request's head (up to the blank line), or "" when it does not come in time or in size.
std::string read_request(int fd) {
  const auto deadline = clock_type::now() + std::chrono::seconds(2);
  std::string got;
  char buf[1024];
  while (got.find("\r\n\r\n") == std::string::npos && got.size() < max_request) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms_until(deadline)) <= 0) return "";
    ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r <= 0) return "";
    got.append(buf, static_cast<size_t>(r));
  }
  return got.find("\r\n\r\n") == std::string::npos ? "" : got;
}

void send_all(int fd, const std::string& text) {
  const auto deadline = clock_type::now() + std::chrono::seconds(5);
  size_t sent = 0;
  while (sent < text.size()) {
    ssize_t w = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (w > 0) {
      sent += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, ms_until(deadline)) <= 0) return;
  }
}

std::string response(const std::string& status, const std::string& type, const std::string& body) {
  return "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}

void serve(std::shared_ptr<text_server::state> s, int fd) {
  const std::string request = read_request(fd);
  const auto line = request.substr(0, request.find("\r\n"));
  std::string target;
  if (line.rfind("GET ", 0) == 0) target = line.substr(4, line.find(' ', 4) - 4);
  target = target.substr(0, target.find('?'));
  if (request.empty()) {
    // too slow or too long: closed without an answer
  } else if (line.rfind("GET ", 0) != 0) {
    send_all(fd, response("405 Method Not Allowed", "text/plain", "GET only\n"));
  } else if (target != s->path) {
    send_all(fd, response("404 Not Found", "text/plain", "only " + s->path + " is served\n"));
  } else {
    send_all(fd, response("200 OK", "text/plain; version=0.0.4; charset=utf-8", s->body()));
  }
  ::close(fd);
  --s->serving;
}

}  // namespace

text_server::text_server(std::string owner, const std::string& host, uint16_t port,
                         std::string path, std::function<std::string()> body)
    : state_(std::make_shared<state>()) {
  state_->owner = std::move(owner);
  state_->path = std::move(path);
  state_->body = std::move(body);
  const int fd = listen_tcp(host, port);
  port_ = bound_port(fd);
  acceptor_ = std::thread([s = state_, fd] {
    accept_until(fd, s->stopping, s->owner, s->backoffs, [&](int c, const sockaddr_storage&) {
      if (s->serving >= max_serving) {
        ::close(c);
        return;
      }
      ++s->serving;
      try {
        std::thread(serve, s, c).detach();
      } catch (const std::system_error&) {
        ::close(c);
        --s->serving;
      }
    });
  });
}

text_server::~text_server() {
  state_->stopping = true;
  acceptor_.join();
  // A request being served reads the body's source, which goes away after the server: wait for
  // it (each is bounded: 2 s to read, 5 s to write).
  while (state_->serving > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace xmesh::transport
