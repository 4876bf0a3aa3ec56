// UCX helpers kept apart from the engine: address parsing, context setup, status messages.
#pragma once

#include <netinet/in.h>
#include <ucp/api/ucp.h>

#include <string>

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

/// `what` plus UCX's text for `status`, e.g. "ucp_init: Input/output error".
std::string status_message(const std::string& what, ucs_status_t status);

/// A context with AM + WAKEUP and a single-threaded worker, configured for `first_host`:
/// UCX_NET_DEVICES defaults to `lo` when unset and the host is a loopback address (UCX's own
/// default also adds a lane over eth0). UCX_TLS is left to the environment: sockaddr
/// client/server endpoints only use TCP lanes anyway. Throws std::runtime_error on failure.
void create_context(const ucx_address& first_host, ucp_context_h& context, ucp_worker_h& worker);

}  // namespace xmesh::transport::ucx
