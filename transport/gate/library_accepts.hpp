// Caps on the connections that libraries accept on a node's data ports.
//
// libzmq's router socket and UCX's TCP worker accept connections themselves and offer no hook to
// refuse one: ZAP never says when a connection ends, and UCX has none at all. So this module
// defines accept(2) and accept4(2) for the whole process (the executable's definitions come
// before libc's for every shared library), and admits a library's new connection only while its
// peer's host holds fewer than `per_host` live connections and the process fewer than `total`.
// A refused connection is closed at once, before the library sees it; its peer gets a reset.
// Connections are counted while their socket lives (its inode behind the descriptor), so no
// close(2) needs watching. The control gate accepts through accept_uncapped: it has caps of its
// own, per handshake.
#pragma once

#include <sys/socket.h>

#include <cstdint>

namespace xmesh::transport {

struct library_accept_caps {
  int per_host = 64;  // live connections from one IP address (unix sockets: one host)
  int total = 512;    // live connections in all
};

struct library_accept_counts {
  uint64_t admitted = 0;
  uint64_t refused_per_host = 0;
  uint64_t refused_total = 0;
  uint64_t live = 0;  // admitted and still open
};

/// Sets the caps for connections accepted from now on.
void set_library_accept_caps(library_accept_caps caps);
[[nodiscard]] library_accept_caps library_accept_caps_now();
[[nodiscard]] library_accept_counts library_accept_counts_now();

/// accept4(2) without the caps (the control gate's own listener).
int accept_uncapped(int fd, sockaddr* address, socklen_t* length, int flags);

}  // namespace xmesh::transport
