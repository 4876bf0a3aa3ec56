// The UCX back end: ucp active messages over a listener, `ucx://HOST:PORT`.
#pragma once

#include <memory>

#include "transport/transport.hpp"

namespace xmesh::transport {

/// Creates a UCX endpoint; one progress thread in wakeup mode makes every UCX call.
std::unique_ptr<endpoint> make_ucx_endpoint();

}  // namespace xmesh::transport
