#include <stdexcept>

#include "transport/local/local_endpoint.hpp"
#include "transport/transport.hpp"
#include "transport/ucx/ucx_endpoint.hpp"
#include "transport/zmq/zmq_endpoint.hpp"

namespace xmesh::transport {

std::unique_ptr<endpoint> make_endpoint(const std::string& backend,
                                        const std::optional<curve_keys>& keys) {
  if (backend == "zmq") return make_zmq_endpoint(keys);
  if (keys)
    throw std::invalid_argument("transport '" + backend +
                                "' cannot authenticate its peers (only zmq has keys)");
  if (backend == "local") return make_local_endpoint();
  if (backend == "ucx") return make_ucx_endpoint();
  throw std::invalid_argument("unknown transport '" + backend + "' (supported: local, zmq, ucx)");
}

}  // namespace xmesh::transport
