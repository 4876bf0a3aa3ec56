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

/// A tensor to write as stored: `fill` gives its bytes (resized to their count by the writer).
struct stored_tensor {
  std::string name;
  kernels::dtype type = kernels::dtype::f32;
  std::vector<int64_t> shape;
  std::function<void(std::vector<std::byte>&)> fill;
};

/// Writes `tensors` in order to `path`; throws on I/O errors.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<stored_tensor>& tensors);
/// Writes `tensors` to `dir`/model.safetensors as the directory's only weights: other shards and
/// an index a previous model left there are removed first (they would mix in).
void write_model_weights(const std::filesystem::path& dir,
                         const std::vector<stored_tensor>& tensors);
/// Writes `tensors` in order to `path` in `type` (f32, bf16 or f16).
void write_safetensors(const std::filesystem::path& path, const std::vector<tensor_spec>& tensors,
                       kernels::dtype type);

/// Elements of a tensor of `shape`.
int64_t numel(const std::vector<int64_t>& shape);
/// `values` stored as `type` (f32, bf16 or f16).
void store_as(const std::vector<float>& values, kernels::dtype type, std::vector<std::byte>& out);

}  // namespace xmesh::model
