// The in-process back end: `local://NAME` listeners in a process-wide registry.
#pragma once

#include <memory>

#include "transport/transport.hpp"

namespace xmesh::transport {

/// Creates an in-process endpoint; each endpoint runs one receive thread.
std::unique_ptr<endpoint> make_local_endpoint();

}  // namespace xmesh::transport
