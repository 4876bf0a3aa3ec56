// The ZeroMQ back end: ROUTER listener, one DEALER per channel, `tcp://HOST:PORT` or `ipc://PATH`.
#pragma once

#include <memory>

#include "transport/transport.hpp"

namespace xmesh::transport {

/// Creates a ZeroMQ endpoint; it runs one I/O thread that owns every socket.
std::unique_ptr<endpoint> make_zmq_endpoint();

}  // namespace xmesh::transport
