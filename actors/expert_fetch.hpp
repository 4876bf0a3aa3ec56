// Streaming one expert's weights from a peer over the data plane: a fetch frame out, a weights
// frame back (transport/frame.hpp). Nodes without their own copy of an expert load replicas
// this way, and a store whose slow tier is a peer reads its misses this way.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/expert_ffn.hpp"
#include "model/resident_expert.hpp"
#include "transport/transport.hpp"

namespace xmesh::actors {

/// A checksum as 16 hex digits, for messages.
std::string checksum_hex(uint64_t v);

/// Asks `peer` (named `peer_name` in errors) for expert `expert` of `layer`, whose shapes and
/// form `layout` gives, and copies the answer into resident memory (at most `bytes_per_s`, 0: no
/// cap). With `checksum` != 0 the bytes must match it (the coordinator's checksum of the model's
/// copy). Throws one line naming the peer: no answer within 120 s, a bad frame, another form of
/// the expert, a checksum mismatch.
std::shared_ptr<model::resident_weights> fetch_expert(
    transport::channel& peer, const std::string& peer_name, const kernels::expert_weights& layout,
    int64_t layer, int64_t expert, int64_t max_expert, uint64_t checksum, int64_t bytes_per_s);

}  // namespace xmesh::actors
