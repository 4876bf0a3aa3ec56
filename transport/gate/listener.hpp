// A TCP listener that survives strangers: the accept loop every public port of a node shares
// (the control gate, the metrics server). When descriptors run out it pauses instead of
// retrying accept in a busy loop (what libzmq and civetweb do).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace xmesh::transport {

/// A listening socket on host:port (0: any free port); throws "cannot listen on HOST:PORT: why".
int listen_tcp(const std::string& host, uint16_t port);

/// The port `fd` is bound to.
uint16_t bound_port(int fd);

/// "IP:PORT" of an address.
std::string address_text(const sockaddr_storage& a);

/// Accepts on `fd` (then closes it) until `stopping`; each connection (non-blocking) goes to
/// `take`. Out of descriptors it waits 100 ms, says so once per episode as `owner` and counts
/// it in `backoffs`.
void accept_until(int fd, const std::atomic<bool>& stopping, const std::string& owner,
                  std::atomic<uint64_t>& backoffs,
                  const std::function<void(int, const sockaddr_storage&)>& take);

}  // namespace xmesh::transport
