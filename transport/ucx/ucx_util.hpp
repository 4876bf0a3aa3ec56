// UCX helpers kept apart from the engine: address parsing, context setup, status messages.
#pragma once

#include <netinet/in.h>
#include <ucp/api/ucp.h>

#include <string>
#include <utility>

namespace xmesh::transport::ucx {

/// A parsed `ucx://HOST:PORT`.
struct ucx_address {
  std::string host;
  uint16_t port = 0;
  sockaddr_in sockaddr{};
  [[nodiscard]] bool loopback() const;
};

/// Parses and resolves `ucx://HOST:PORT` (IPv4); throws std::invalid_argument when malformed.
ucx_address parse_address(const std::string& address);

/// "ucx://HOST:PORT".
std::string format_address(const std::string& host, uint16_t port);

/// A worker's address as peers connect to it: "ucx-worker://HOST/HEX" (HOST picks the network
/// device on the connecting side; HEX is ucp_worker_get_address's blob). Nodes publish it over
/// the control plane; nothing listens for strangers on a sockaddr.
std::string format_worker_address(const std::string& host, const void* blob, size_t size);
/// Parses one: the host (as a ucx_address with port 0) and the blob; throws
/// std::invalid_argument naming the fault.
std::pair<ucx_address, std::string> parse_worker_address(const std::string& address);

/// `what` plus UCX's text for `status`, e.g. "ucp_init: Input/output error".
std::string status_message(const std::string& what, ucs_status_t status);

/// A context with AM + WAKEUP and a single-threaded worker, configured for `first_host`:
/// UCX_NET_DEVICES defaults to `lo` when unset and the host is a loopback address (UCX's own
/// default also adds a lane over eth0), UCX_TLS to `tcp`. Throws std::runtime_error on failure.
void create_context(const ucx_address& first_host, ucp_context_h& context, ucp_worker_h& worker);

}  // namespace xmesh::transport::ucx
