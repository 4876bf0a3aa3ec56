#include "transport/gate/listener.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "transport/gate/library_accepts.hpp"

namespace xmesh::transport {

int listen_tcp(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string where = "cannot listen on " + host + ":" + std::to_string(port) + ": ";
  if (int r = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); r != 0)
    throw std::runtime_error(where + "cannot resolve " + host + ": " + gai_strerror(r));
  std::string why = "no address";
  int fd = -1;
  for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) throw std::runtime_error(where + why);
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return a.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port)
                                : ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
}

std::string address_text(const sockaddr_storage& a) {
  char ip[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (a.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
    port = ntohs(v6->sin6_port);
  }
  return std::string(ip) + ":" + std::to_string(port);
}

void accept_until(int fd, const std::atomic<bool>& stopping, const std::string& owner,
                  std::atomic<uint64_t>& backoffs,
                  const std::function<void(int, const sockaddr_storage&)>& take) {
  bool backing_off = false;
  while (!stopping) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    sockaddr_storage from{};
    socklen_t len = sizeof from;
    // The gate caps its connections per handshake itself; the library caps are for the others.
    int c =
        accept_uncapped(fd, reinterpret_cast<sockaddr*>(&from), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
      backing_off = false;
      take(c, from);
      continue;
    }
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      ++backoffs;
      if (!backing_off)
        std::fprintf(stderr, "%s: out of descriptors (%s): accepting again in 100 ms\n",
                     owner.c_str(), std::strerror(errno));
      backing_off = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ::close(fd);
}

}  // namespace xmesh::transport
