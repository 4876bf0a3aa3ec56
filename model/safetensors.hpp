// Safetensors checkpoints, memory-mapped: one file or shards named by model.safetensors.index.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/core/dtype.hpp"

namespace xmesh::model {

/// One tensor inside a mapped file; `data` points into the mapping (weights are used in place).
struct tensor_info {
  std::string name;
  kernels::dtype type = kernels::dtype::f32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  int64_t bytes = 0;
  std::string file;  // for error messages

  [[nodiscard]] int64_t numel() const;
};

/// Formats a shape the way errors print it: "[2, 3]".
std::string shape_text(const std::vector<int64_t>& shape);

/// A read-only memory mapping of one file.
class mapped_file {
 public:
  explicit mapped_file(const std::filesystem::path& path);
  ~mapped_file();
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;

  [[nodiscard]] std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

/// All tensors of a checkpoint directory, validated, with their mappings kept alive.
class safetensors_checkpoint {
 public:
  /// Opens `dir/model.safetensors.index.json` when present, else every `dir/*.safetensors`.
  static safetensors_checkpoint open(const std::filesystem::path& dir);

  /// The tensor called `name`, or nullptr.
  [[nodiscard]] const tensor_info* find(const std::string& name) const;
  [[nodiscard]] const std::map<std::string, tensor_info>& tensors() const { return tensors_; }
  /// Every mapped byte range holding tensor data (for bandwidth measurement and prefetch).
  [[nodiscard]] std::vector<std::span<const std::byte>> data_regions() const;

  /// Parses and validates one file's header (exposed for tests); throws one clear line.
  void add_file(const std::filesystem::path& path);

 private:
  std::vector<std::unique_ptr<mapped_file>> files_;
  std::map<std::string, tensor_info> tensors_;
};

}  // namespace xmesh::model
