#include "actors/expert_fetch.hpp"

#include <chrono>
#include <cstdio>
#include <future>
#include <stdexcept>
#include <utility>
#include <vector>

#include "transport/frame.hpp"

namespace xmesh::actors {

std::string checksum_hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::shared_ptr<model::resident_weights> fetch_expert(
    transport::channel& peer, const std::string& peer_name, const kernels::expert_weights& layout,
    int64_t layer, int64_t expert, int64_t max_expert, uint64_t checksum, int64_t bytes_per_s) {
  const std::string what = "expert " + std::to_string(expert) + " of layer " +
                           std::to_string(layer) + " from peer '" + peer_name + "'";
  transport::frame_header h;
  h.kind = transport::frame_kind::fetch;
  h.layer = static_cast<uint32_t>(layer);
  h.expert = static_cast<uint32_t>(expert);
  auto answer = std::make_shared<std::promise<std::pair<transport::bytes, std::string>>>();
  auto future = answer->get_future();
  peer.request(transport::encode_blob_frame(h, {}),
               [answer](transport::bytes reply, std::string error) {
                 answer->set_value({std::move(reply), std::move(error)});
               });
  if (future.wait_for(std::chrono::seconds(120)) != std::future_status::ready)
    throw std::runtime_error(what + ": no answer within 120 s");
  auto [reply, error] = future.get();
  if (!error.empty()) throw std::runtime_error(what + ": " + error);
  transport::frame_limits limits;
  limits.max_expert = static_cast<uint32_t>(max_expert);
  limits.max_payload_bytes = static_cast<uint64_t>(layout.bytes());
  auto d = transport::decode_frame(reply, limits);
  if (!d) throw std::runtime_error(what + ": bad frame: " + d.reason);
  const auto& f = d.frame;
  if (f.header.kind == transport::frame_kind::error)
    throw std::runtime_error(what + ": " + std::string(f.error_text));
  if (f.header.kind != transport::frame_kind::weights || f.header.layer != layer ||
      f.header.expert != expert)
    throw std::runtime_error(what + ": the answer is not that expert's weights");
  if (f.blob.size() != static_cast<size_t>(layout.bytes()))
    throw std::runtime_error(what + ": the peer holds another form of it (" +
                             std::to_string(f.blob.size()) + " bytes, this node's form " +
                             std::to_string(layout.bytes()) +
                             "): streams need the same copy of the model");
  // NOTE: decode_frame verified the header checksum against the bytes, so comparing it with the
  // coordinator's checksum of the same tensors checks the weights end to end.
  if (checksum != 0 && f.header.checksum != checksum)
    throw std::runtime_error(what + ": checksum " + checksum_hex(f.header.checksum) +
                             " does not match the model's " + checksum_hex(checksum) +
                             "; nothing loaded");
  std::vector<const std::byte*> sources;
  const std::byte* at = f.blob.data();
  for (auto region : model::regions_of(layout)) {
    sources.push_back(at);
    at += region.size();
  }
  return model::make_resident(layout, sources, bytes_per_s);
}

}  // namespace xmesh::actors
