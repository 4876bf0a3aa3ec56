// Writes a safetensors file tensor by tensor, so multi-GB models never sit whole in memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "kernels/core/dtype.hpp"

namespace xmesh::model {

/// A tensor to write: its values come from `fill` (f32), converted to `type` on the way out.
struct tensor_spec {
  std::string name;
  std::vector<int64_t> shape;
  std::function<void(std::vector<float>&)> fill;  // resized to numel by the writer
};

/// Writes `tensors` in order to `path` in `type`; throws on I/O errors.
void write_safetensors(const std::filesystem::path& path, const std::vector<tensor_spec>& tensors,
                       kernels::dtype type);

}  // namespace xmesh::model
