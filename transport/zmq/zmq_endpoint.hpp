// The ZeroMQ back end: ROUTER listener, one DEALER per channel, `tcp://HOST:PORT` or `ipc://PATH`.
#pragma once

#include <memory>

#include "transport/transport.hpp"

namespace xmesh::transport {

/// Creates a ZeroMQ endpoint; it runs one I/O thread that owns every socket. With `keys`, every
/// socket speaks CURVE and a ZAP handler admits only the cluster's client key.
std::unique_ptr<endpoint> make_zmq_endpoint(const std::optional<curve_keys>& keys = std::nullopt);

}  // namespace xmesh::transport
