#include "transport/factory.hpp"

#include <stdexcept>

#include "transport/local/local_endpoint.hpp"
#include "transport/ucx/ucx_endpoint.hpp"
#include "transport/zmq/zmq_endpoint.hpp"

namespace xmesh::transport {
namespace {

std::unique_ptr<endpoint> make_plain(const std::string& backend) {
  if (backend == "local") return make_local_endpoint();
  if (backend == "zmq") return make_zmq_endpoint();
  if (backend == "ucx") return make_ucx_endpoint();
  throw std::invalid_argument("unknown transport '" + backend + "' (supported: local, zmq, ucx)");
}

}  // namespace

std::unique_ptr<endpoint> make_endpoint(const std::string& backend,
                                        const std::optional<data_key>& key, drop_callback on_drop) {
  auto plain = make_plain(backend);
  if (!key) return plain;
  return seal_endpoint(std::move(plain), *key, std::move(on_drop));
}

}  // namespace xmesh::transport
