#include "model/npy.hpp"

#include <fstream>
#include <stdexcept>
#include <string>

namespace xmesh::model {

void write_npy(const std::filesystem::path& path, std::span<const float> data, int64_t rows,
               int64_t cols) {
  if (static_cast<int64_t>(data.size()) != rows * cols)
    throw std::runtime_error("write_npy: data size does not match shape");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path.string() + ": cannot create");
  out.write("\x93NUMPY\x01\x00", 8);
  auto len = static_cast<uint16_t>(header.size());
  char len_bytes[2] = {static_cast<char>(len & 0xFF), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data.data()),
            static_cast<std::streamsize>(data.size_bytes()));
  if (!out) throw std::runtime_error(path.string() + ": write failed");
}

}  // namespace xmesh::model
