// The control gate: the only thing on a node's public control port (CAF itself listens on
// nothing). It admits a peer only after a mutual TLS handshake with a certificate of the
// cluster's CA (or, with `security: none`, a plain connection), within a deadline; it caps what
// a peer may announce and how many connections wait for a handshake (per host and in all), and
// backs off when descriptors run out. An admitted connection is handed on as one end of a local
// socket pair, so nothing else on the host can reach what lies behind the gate. Outgoing control
// connections are dialled the same way: TLS to the peer, whose certificate must name the node
// meant, piped to a socket pair the caller owns the other end of.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
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
  int max_pending = 64;           // connections still in their handshake, in all
  int max_pending_per_host = 16;  // ... and from one address
  int max_connections = 256;      // admitted ones
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

  /// Accepts on host:port (0: any free port; the port is returned); each admitted connection is
  /// handed to `admit` as the local end of a socket pair (admit owns it). Throws when it cannot
  /// listen.
  uint16_t listen(const std::string& host, uint16_t port, std::function<void(int)> admit);
  /// Connects to host:port in the background and pipes it to `local` (which the gate then owns):
  /// TLS whose peer certificate must name `peer` (empty: any node of the cluster), or plain.
  /// When it fails, `local` is closed after last_error says why.
  void dial(int local, const std::string& host, uint16_t port, const std::string& peer);
  /// Why the last connection dialled to host:port failed ("" when none did).
  [[nodiscard]] std::string last_error(const std::string& host, uint16_t port) const;

  [[nodiscard]] bool authenticated() const;
  [[nodiscard]] const gate_counters& counters() const;

  struct state;  // shared with the gate's threads; the destructor joins them

 private:
  std::shared_ptr<state> state_;
  std::mutex setup_mu_;  // listeners_
  std::vector<std::thread> listeners_;
};

}  // namespace xmesh::transport
