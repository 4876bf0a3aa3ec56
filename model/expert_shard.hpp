// Partial copies of a model for expert-only nodes (edge devices): only some experts' tensors, in
// one smaller safetensors shard, with the list in xmesh_experts.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <vector>

namespace xmesh::model {

/// Experts by layer: layer -> expert ids.
using expert_set = std::map<int64_t, std::vector<int64_t>>;

/// The file in a model directory that marks it as a partial copy and lists its experts.
inline constexpr const char* expert_shard_file = "xmesh_experts.json";

/// Writes to `out` the config.json of `source` (so it is the same model), xmesh_experts.json and
/// model.safetensors holding only the tensors of `experts` (scales of quantized ones included),
/// in their stored form. Returns the bytes of tensor data written; throws naming a missing expert.
int64_t write_expert_shard(const std::filesystem::path& source, const std::filesystem::path& out,
                           const expert_set& experts);

/// The experts `dir` holds when it is a partial copy; nullopt for a whole model.
std::optional<expert_set> read_expert_shard(const std::filesystem::path& dir);

}  // namespace xmesh::model
