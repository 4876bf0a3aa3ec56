#include "transport/ucx/ucx_util.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstdlib>
#include <stdexcept>

namespace xmesh::transport::ucx {

bool ucx_address::loopback() const { return (ntohl(sockaddr.sin_addr.s_addr) >> 24) == 127; }

ucx_address parse_address(const std::string& address) {
  constexpr std::string_view scheme = "ucx://";
  auto bad = [&](const char* why) {
    return std::invalid_argument("ucx transport address must be ucx://HOST:PORT (" +
                                 std::string(why) + "), got '" + address + "'");
  };
  if (address.rfind(scheme, 0) != 0) throw bad("scheme");
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon < scheme.size()) throw bad("no port");
  ucx_address a;
  a.host = address.substr(scheme.size(), colon - scheme.size());
  const std::string port = address.substr(colon + 1);
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) throw bad("bad port");
  a.port = static_cast<uint16_t>(p);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (a.host.empty() || ::getaddrinfo(a.host.c_str(), nullptr, &hints, &res) != 0 || !res)
    throw bad("unknown host");
  a.sockaddr = *reinterpret_cast<sockaddr_in*>(res->ai_addr);
  ::freeaddrinfo(res);
  a.sockaddr.sin_port = htons(a.port);
  return a;
}

std::string format_address(const std::string& host, uint16_t port) {
  return "ucx://" + host + ":" + std::to_string(port);
}

std::string format_worker_address(const std::string& host, const void* blob, size_t size) {
  static const char digits[] = "0123456789abcdef";
  std::string out = "ucx-worker://" + host + "/";
  const auto* b = static_cast<const unsigned char*>(blob);
  for (size_t i = 0; i < size; ++i) out += {digits[b[i] >> 4], digits[b[i] & 15]};
  return out;
}

std::pair<ucx_address, std::string> parse_worker_address(const std::string& address) {
  constexpr std::string_view scheme = "ucx-worker://";
  auto bad = [&](const char* why) {
    return std::invalid_argument("ucx worker address must be ucx-worker://HOST/HEX (" +
                                 std::string(why) + "), got '" + address.substr(0, 80) + "'");
  };
  if (address.rfind(scheme, 0) != 0) throw bad("scheme");
  auto slash = address.find('/', scheme.size());
  if (slash == std::string::npos) throw bad("no worker address");
  const std::string hex = address.substr(slash + 1);
  if (hex.empty() || hex.size() % 2 != 0 || hex.size() > 8192) throw bad("length");
  std::string blob(hex.size() / 2, '\0');
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw bad("not hex");
  };
  for (size_t i = 0; i < blob.size(); ++i)
    blob[i] = static_cast<char>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
  auto host = parse_address("ucx://" + address.substr(scheme.size(), slash - scheme.size()) + ":0");
  return {host, blob};
}

std::string status_message(const std::string& what, ucs_status_t status) {
  return what + ": " + ucs_status_string(status);
}

void create_context(const ucx_address& first_host, ucp_context_h& context, ucp_worker_h& worker) {
  // With peer error handling UCX's TCP rendezvous moves the data as active-message fragments of
  // TX_SEG_SIZE, each copied and progressed on its own: the default 8 KiB makes 128 per MiB
  // frame. Against 64 KiB, 512 KiB fragments (two per MiB frame) cut a 1 MiB frame's round trip
  // from 590 to 320 us and raised one-way throughput from 3.2 to 4.7-5.8 GB/s; one fragment per
  // frame (2 MiB) streams as fast but loses the overlap of sending and receiving (round trip
  // 510-560 us). Receive segments must be at least as large (UCX refuses otherwise), so they
  // follow the send segment size, a user's included. Transport-level, so set the same way.
  ::setenv("UCX_TCP_TX_SEG_SIZE", "512k", 0);
  ::setenv("UCX_TCP_RX_SEG_SIZE", std::getenv("UCX_TCP_TX_SEG_SIZE"), 0);
  // Peers connect by worker address; TCP keeps failure detection immediate (a dead peer's
  // connection resets) where shared memory would wait for keepalives. A user's value wins.
  ::setenv("UCX_TLS", "tcp", 0);
  ucp_config_t* config = nullptr;
  if (auto st = ucp_config_read(nullptr, nullptr, &config); st != UCS_OK)
    throw std::runtime_error(status_message("ucp_config_read", st));
  if (std::getenv("UCX_NET_DEVICES") == nullptr && first_host.loopback())
    ucp_config_modify(config, "NET_DEVICES", "lo");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  auto st = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (st != UCS_OK) throw std::runtime_error(status_message("ucp_init", st));
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  // One thread at a time: the progress thread, or one that acts for it while it sleeps.
  wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
  if (st = ucp_worker_create(context, &wp, &worker); st != UCS_OK) {
    ucp_cleanup(context);
    context = nullptr;
    throw std::runtime_error(status_message("ucp_worker_create", st));
  }
}

}  // namespace xmesh::transport::ucx
