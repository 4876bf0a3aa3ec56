// A read-only HTTP server of one text document (a node's Prometheus /metrics) that strangers
// cannot stall or spin: a request must arrive within 2 s and 8 KiB, at most 16 are served at a
// time, every answer closes its connection, and accepting backs off when descriptors run out
// (prometheus-cpp's civetweb retries accept in a busy loop then).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace xmesh::transport {

class text_server {
 public:
  /// Serves `body()` at GET `path` on host:port (0: any free port); `owner` names it in logs.
  /// Throws naming the address when it cannot listen.
  text_server(std::string owner, const std::string& host, uint16_t port, std::string path,
              std::function<std::string()> body);
  ~text_server();
  text_server(const text_server&) = delete;
  text_server& operator=(const text_server&) = delete;

  [[nodiscard]] uint16_t port() const { return port_; }

  struct state;  // shared with connection threads, which may outlive the server briefly

 private:
  std::shared_ptr<state> state_;
  uint16_t port_ = 0;
  std::thread acceptor_;
};

}  // namespace xmesh::transport
