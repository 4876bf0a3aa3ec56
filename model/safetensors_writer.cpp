#include "model/safetensors_writer.hpp"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace xmesh::model {

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

void store_as(const std::vector<float>& v, kernels::dtype type, std::vector<std::byte>& out) {
  out.resize(v.size() * kernels::dtype_size(type));
  if (type == kernels::dtype::f32) {
    std::memcpy(out.data(), v.data(), v.size() * 4);
    return;
  }
  auto* h = reinterpret_cast<uint16_t*>(out.data());
  for (size_t i = 0; i < v.size(); ++i)
    h[i] = type == kernels::dtype::bf16 ? kernels::f32_to_bf16(v[i]) : kernels::f32_to_f16(v[i]);
}

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<stored_tensor>& tensors) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t bytes = numel(t.shape) * static_cast<int64_t>(kernels::dtype_size(t.type));
    header[t.name] = {{"dtype", std::string(kernels::dtype_name(t.type))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path.string() + ": cannot create");
  uint64_t len = text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::vector<std::byte> bytes;
  for (const auto& t : tensors) {
    bytes.assign(numel(t.shape) * kernels::dtype_size(t.type), std::byte{0});
    t.fill(bytes);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  if (!out.flush()) throw std::runtime_error(path.string() + ": write failed");
}

void write_model_weights(const std::filesystem::path& dir,
                         const std::vector<stored_tensor>& tensors) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".safetensors" ||
        entry.path().filename() == "model.safetensors.index.json")
      fs::remove(entry.path());
  write_safetensors(dir / "model.safetensors", tensors);
}

void write_safetensors(const std::filesystem::path& path, const std::vector<tensor_spec>& tensors,
                       kernels::dtype type) {
  std::vector<stored_tensor> stored;
  for (const auto& t : tensors)
    stored.push_back({t.name, type, t.shape, [&t, type](std::vector<std::byte>& out) {
                        std::vector<float> values(numel(t.shape));
                        t.fill(values);
                        store_as(values, type, out);
                      }});
  write_safetensors(path, stored);
}

}  // namespace xmesh::model
