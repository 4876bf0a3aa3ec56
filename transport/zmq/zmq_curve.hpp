// ZeroMQ CURVE for the data plane: the cluster's key pairs (made by `xmesh cluster keygen`, read
// by nodes) and the ZAP handler that admits only the cluster's client key.
#pragma once

#include <atomic>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "transport/transport.hpp"

namespace xmesh::transport {

// ZAP (ZeroMQ's authentication protocol, RFC 27): answers the library's requests for every
// incoming CURVE handshake on this context; only the cluster's client key passes, so a stranger's
// connection closes before any of its frames reaches a handler.
class zap_handler {
 public:
  /// Binds the context's ZAP endpoint and answers on its own thread until destroyed; throws when
  /// the key is not Z85.
  zap_handler(zmq::context_t& context, const std::string& client_public_z85);
  ~zap_handler();
  [[nodiscard]] uint64_t refused() const { return refused_; }

 private:
  void run();

  zmq::socket_t socket_;
  std::string allowed_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> refused_{0};
  std::thread thread_;
};

}  // namespace xmesh::transport
