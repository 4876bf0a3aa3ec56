// NumPy .npy output (format 1.0), for logits that tests and users read with numpy.load.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

namespace xmesh::model {

/// Writes a little-endian float32 array of shape [rows, cols]; throws on I/O errors.
void write_npy(const std::filesystem::path& path, std::span<const float> data, int64_t rows,
               int64_t cols);

}  // namespace xmesh::model
