// The control gate: the only thing on a node's public control port. CAF 0.17 listens on loopback
// behind it; the gate admits a peer only after a mutual TLS handshake with a certificate of the
// cluster's CA (or, with `security: none`, a plain connection), each within a deadline, caps what
// a peer may announce, how many connections wait for a handshake (per host and in all) and backs
// off when descriptors run out. Outgoing control connections go through a loopback tunnel that
// speaks TLS to the peer and checks the certificate names the node meant.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "transport/gate/tls.hpp"

namespace xmesh::transport {

/// What a peer may make the gate (and CAF behind it) hold.
struct gate_limits {
  uint32_t max_message_bytes = 64u << 20;  // largest control message a peer may announce
  std::chrono::milliseconds handshake_deadline{5000};  // accept to first whole message
  int max_pending = 64;  // connections still in their handshake, in all and per host
  int max_pending_per_host = 16;
  int max_connections = 256;  // admitted ones
};

/// What the gate let in and refused, by reason (for logs and metrics).
struct gate_counters {
  std::atomic<uint64_t> admitted{0};
  std::atomic<uint64_t> refused_handshake{0};  // TLS failed, wrong certificate, deadline passed
  std::atomic<uint64_t> refused_oversized{0};  // announced a message over the cap
  std::atomic<uint64_t> refused_capacity{0};   // too many connections waiting or admitted
  std::atomic<uint64_t> accept_backoffs{0};    // out of descriptors: accept paused
};

/// Follows the control plane's framing (CAF 0.17 BASP: a 32-byte header whose payload length is
/// a big-endian uint32 at byte 4) in a byte stream and refuses announcements over a cap before
/// anything allocates for them.
class message_guard {
 public:
  explicit message_guard(uint32_t cap) : cap_(cap) {}
  /// False once the stream announces a message longer than the cap.
  [[nodiscard]] bool feed(const uint8_t* data, size_t n);
  [[nodiscard]] uint64_t messages() const { return messages_; }  // whole ones seen
  [[nodiscard]] uint32_t announced() const { return announced_; }

 private:
  static constexpr size_t header_bytes = 32;
  uint32_t cap_;
  uint8_t header_[header_bytes] = {};
  size_t have_ = 0;
  uint64_t left_ = 0;
  uint64_t messages_ = 0;
  uint32_t announced_ = 0;
};

class control_gate {
 public:
  /// `owner` names this process in log lines; no `tls`: plain connections (security: none).
  control_gate(std::string owner, std::optional<tls_identity> tls, gate_limits limits = {});
  ~control_gate();
  control_gate(const control_gate&) = delete;
  control_gate& operator=(const control_gate&) = delete;

  /// Accepts on host:port and forwards every admitted connection to 127.0.0.1:inner; throws
  /// when it cannot listen.
  void listen(const std::string& host, uint16_t port, uint16_t inner);
  /// A loopback port whose connections reach host:port through TLS; the peer's certificate must
  /// name `peer` (empty: any node of the cluster). With plain connections: `port` itself.
  uint16_t tunnel(const std::string& host, uint16_t port, const std::string& peer);
  /// Why the last connection through the tunnel to host:port failed ("" when none did).
  [[nodiscard]] std::string last_error(const std::string& host, uint16_t port) const;

  [[nodiscard]] bool authenticated() const;
  [[nodiscard]] const gate_counters& counters() const;

  struct state;  // shared with the gate's threads, which may outlive it by a poll period

 private:
  std::shared_ptr<state> state_;
  std::mutex setup_mu_;  // listeners_ and tunnels_: tunnels open from any thread
  std::vector<std::thread> listeners_;
  std::map<std::string, uint16_t> tunnels_;  // "host:port" -> loopback port
};

}  // namespace xmesh::transport
