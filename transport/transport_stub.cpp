#include <stdexcept>

#include "transport/transport.hpp"

namespace xmesh::transport {

std::unique_ptr<endpoint> make_endpoint(const std::string& backend) {
  throw std::runtime_error("transport back end '" + backend + "' not built yet");
}

}  // namespace xmesh::transport
