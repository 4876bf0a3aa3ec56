#include <cstdio>
#include <exception>

#include "transport/transport.hpp"

namespace xmesh::transport {

void invoke_handler(const request_handler& handler, bytes message,
                    std::shared_ptr<reply_handle> reply) {
  try {
    handler(std::move(message), std::move(reply));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xmesh transport: request handler failed, message dropped: %s\n",
                 e.what());
  }
}

}  // namespace xmesh::transport
