// Endpoints by back-end name, sealed (seal.hpp) when the cluster has a data key.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "transport/seal.hpp"
#include "transport/transport.hpp"

namespace xmesh::transport {

/// Creates an endpoint of the named back end ("local", "zmq", "ucx"); with `key`, every message
/// it sends is sealed and every one it receives is opened, and `on_drop` hears of those dropped.
/// Throws listing the supported names.
std::unique_ptr<endpoint> make_endpoint(const std::string& backend,
                                        const std::optional<data_key>& key = std::nullopt,
                                        drop_callback on_drop = {});

}  // namespace xmesh::transport
