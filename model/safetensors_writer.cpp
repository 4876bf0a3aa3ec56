#include "model/safetensors_writer.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace xmesh::model {

namespace {

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

void write_converted(std::ofstream& out, const std::vector<float>& v, kernels::dtype type) {
  if (type == kernels::dtype::f32) {
    out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    return;
  }
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    h[i] = type == kernels::dtype::bf16 ? kernels::f32_to_bf16(v[i]) : kernels::f32_to_f16(v[i]);
  out.write(reinterpret_cast<const char*>(h.data()), static_cast<std::streamsize>(h.size() * 2));
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::vector<tensor_spec>& tensors,
                       kernels::dtype type) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t bytes = numel(t.shape) * static_cast<int64_t>(kernels::dtype_size(type));
    header[t.name] = {{"dtype", std::string(kernels::dtype_name(type))},
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
  std::vector<float> values;
  for (const auto& t : tensors) {
    values.assign(numel(t.shape), 0.0f);
    t.fill(values);
    write_converted(out, values, type);
  }
  if (!out.flush()) throw std::runtime_error(path.string() + ": write failed");
}

}  // namespace xmesh::model
