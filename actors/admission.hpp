// The coordinator's checks of who may join and who may order (docs/security.md): TLS proved
// a connection is a member's; these bind a registration to its node's certificate, an order to
// the operator's key, and a store's low-precision copy to the first one registered.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

#include "actors/protocol.hpp"

namespace xmesh::actors {

/// Why a registration is refused in an authenticated cluster (`keys`: its keys folder), or "":
/// its certificate must be the cluster CA's, name the node it registers as, and its key must
/// have signed the registration.
std::string claim_refusal(const std::filesystem::path& keys, const node_info& info);

/// Why an order is refused in an authenticated cluster, or "" (always "" with `keys` empty:
/// security none): the operator's key (which only the command line holds, not the nodes) must
/// have signed `text` under the cluster CA.
std::string order_refusal(const std::filesystem::path& keys, const operator_proof& proof,
                          const std::string& text);

/// Why a node whose store keeps a low-precision copy is refused, or "": its copy's checksum must
/// be that of `first` (node, checksum; empty: none yet), since rows marked low-precision must
/// give the same bits on every replica.
std::string fallback_refusal(const std::pair<std::string, uint64_t>& first, const node_info& info);

}  // namespace xmesh::actors
