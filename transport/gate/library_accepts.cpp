#include "transport/gate/library_accepts.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

namespace xmesh::transport {

namespace {

using host_key = std::array<uint8_t, 17>;  // address family, then the IPv4 or IPv6 address

// One admitted connection, alive while its descriptor still names the same socket.
struct connection {
  int fd;
  dev_t dev;
  ino_t ino;
  host_key host;
};

struct registry {
  std::mutex mutex;
  library_accept_caps caps;
  library_accept_counts counts;
  std::vector<connection> live;
};

registry& state() {
  static registry r;
  return r;
}

bool still_open(const connection& c) {
  struct stat s {};
  return ::fstat(c.fd, &s) == 0 && s.st_dev == c.dev && s.st_ino == c.ino;
}

host_key host_of(int fd) {
  host_key key{};
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return key;
  key[0] = static_cast<uint8_t>(a.ss_family);
  if (a.ss_family == AF_INET)
    std::memcpy(&key[1], &reinterpret_cast<const sockaddr_in*>(&a)->sin_addr, 4);
  else if (a.ss_family == AF_INET6)
    std::memcpy(&key[1], &reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr, 16);
  return key;
}

// Whether a connection a library just accepted may stay; counts it when it may.
bool admit(int fd) {
  connection c{fd, 0, 0, host_of(fd)};
  struct stat s {};
  if (::fstat(fd, &s) != 0) return false;
  c.dev = s.st_dev;
  c.ino = s.st_ino;
  auto& r = state();
  std::lock_guard lock(r.mutex);
  // Connections the libraries closed since are forgotten: this host's now, everyone's at the cap.
  std::erase_if(r.live, [&](const connection& o) { return o.host == c.host && !still_open(o); });
  const auto from_host = std::count_if(r.live.begin(), r.live.end(),
                                       [&](const connection& o) { return o.host == c.host; });
  if (from_host >= r.caps.per_host) {
    ++r.counts.refused_per_host;
    return false;
  }
  if (std::ssize(r.live) >= r.caps.total) {
    std::erase_if(r.live, [](const connection& o) { return !still_open(o); });
    if (std::ssize(r.live) >= r.caps.total) {
      ++r.counts.refused_total;
      return false;
    }
  }
  r.live.push_back(c);
  ++r.counts.admitted;
  return true;
}

int capped_accept(int fd, sockaddr* address, socklen_t* length, int flags) {
  const socklen_t room = length ? *length : 0;
  for (;;) {
    if (length) *length = room;
    const int c = accept_uncapped(fd, address, length, flags);
    if (c < 0 || admit(c)) return c;
    ::close(c);
    // Refused: the next connection waiting is tried. libzmq's listener blocks, and calls accept
    // only when one waits, so with none waiting the answer is "try again later".
    pollfd waiting{fd, POLLIN, 0};
    if (::poll(&waiting, 1, 0) != 1) {
      errno = EAGAIN;
      return -1;
    }
  }
}

}  // namespace

void set_library_accept_caps(library_accept_caps caps) {
  std::lock_guard lock(state().mutex);
  state().caps = caps;
}

library_accept_caps library_accept_caps_now() {
  std::lock_guard lock(state().mutex);
  return state().caps;
}

library_accept_counts library_accept_counts_now() {
  auto& r = state();
  std::lock_guard lock(r.mutex);
  std::erase_if(r.live, [](const connection& o) { return !still_open(o); });
  auto counts = r.counts;
  counts.live = r.live.size();
  return counts;
}

int accept_uncapped(int fd, sockaddr* address, socklen_t* length, int flags) {
  return static_cast<int>(::syscall(SYS_accept4, fd, address, length, flags));
}

}  // namespace xmesh::transport

// The process's accept(2) and accept4(2): libzmq and UCX call these instead of libc's.
extern "C" int accept(int fd, sockaddr* address, socklen_t* length) {
  return xmesh::transport::capped_accept(fd, address, length, 0);
}

extern "C" int accept4(int fd, sockaddr* address, socklen_t* length, int flags) {
  return xmesh::transport::capped_accept(fd, address, length, flags);
}
