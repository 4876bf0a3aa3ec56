#include "model/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace xmesh::model {

namespace {

using json = nlohmann::json;
constexpr uint64_t max_header_bytes = 100u << 20;  // the format's own limit

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
  throw std::runtime_error(file.string() + ": " + what);
}

tensor_info parse_entry(const std::filesystem::path& file, const std::string& name, const json& e,
                        uint64_t data_size) {
  auto bad = [&](const std::string& what) { fail(file, "tensor '" + name + "': " + what); };
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    bad("entry needs dtype, shape and data_offsets");
  if (!e["dtype"].is_string()) bad("dtype is not a string");
  auto type = kernels::parse_dtype(e["dtype"].get<std::string>());
  if (!type)
    bad("unsupported dtype " + e["dtype"].get<std::string>() +
        " (supported: F32, BF16, F16, I8, U8, F8_E4M3)");
  tensor_info t;
  t.name = name;
  t.type = *type;
  t.file = file.string();
  if (!e["shape"].is_array()) bad("shape is not a list");
  for (const auto& d : e["shape"]) {
    if (!d.is_number_unsigned()) bad("shape has a non-integer or negative dimension");
    t.shape.push_back(d.get<int64_t>());
  }
  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    bad("data_offsets must be two non-negative integers");
  uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end || end > data_size)
    bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
        "] out of range (data is " + std::to_string(data_size) + " bytes)");
  t.bytes = static_cast<int64_t>(end - begin);
  if (t.bytes != t.numel() * static_cast<int64_t>(kernels::dtype_size(t.type)))
    bad("shape " + shape_text(t.shape) + " needs " +
        std::to_string(t.numel() * kernels::dtype_size(t.type)) + " bytes, data_offsets give " +
        std::to_string(t.bytes));
  t.data = reinterpret_cast<const std::byte*>(begin);  // relocated by the caller
  return t;
}

}  // namespace

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t tensor_info::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

mapped_file::mapped_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, "cannot stat");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(path, std::string("cannot map: ") + std::strerror(errno));
    }
    ::madvise(p, size_, MADV_WILLNEED);
    data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
}

mapped_file::~mapped_file() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

void safetensors_checkpoint::add_file(const std::filesystem::path& path) {
  auto file = std::make_unique<mapped_file>(path);
  auto bytes = file->bytes();
  if (bytes.size() < 8) fail(path, "truncated: shorter than the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);  // little-endian, as is this machine
  if (header_len > max_header_bytes || header_len > bytes.size() - 8)
    fail(path, "header length " + std::to_string(header_len) + " exceeds the file (" +
                   std::to_string(bytes.size()) + " bytes)");
  std::string_view header(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  json j = json::parse(header, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(path, "header is not a valid JSON object");
  const std::byte* data = bytes.data() + 8 + header_len;
  uint64_t data_size = bytes.size() - 8 - header_len;

  std::vector<tensor_info> found;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    found.push_back(parse_entry(path, it.key(), it.value(), data_size));
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.data < b.data; });
  for (size_t i = 1; i < found.size(); ++i) {
    auto prev_end = reinterpret_cast<uintptr_t>(found[i - 1].data) + found[i - 1].bytes;
    if (reinterpret_cast<uintptr_t>(found[i].data) < prev_end)
      fail(path, "tensors '" + found[i - 1].name + "' and '" + found[i].name + "' overlap");
  }
  for (auto& t : found) {
    t.data = data + reinterpret_cast<uintptr_t>(t.data);
    if (tensors_.count(t.name)) fail(path, "tensor '" + t.name + "' appears in two files");
    tensors_.emplace(t.name, std::move(t));
  }
  files_.push_back(std::move(file));
}

safetensors_checkpoint safetensors_checkpoint::open(const std::filesystem::path& dir) {
  safetensors_checkpoint ck;
  auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index_path)) {
    std::ifstream in(index_path);
    std::stringstream text;
    text << in.rdbuf();
    json j = json::parse(text.str(), nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(index_path, "needs a JSON object with a 'weight_map' object");
    std::vector<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        fail(index_path, "weight_map['" + it.key() + "'] is not a file name");
      auto shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos)
        fail(index_path, "shard name '" + shard + "' has a '/'");
      if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    }
    for (const auto& s : shards) ck.add_file(dir / s);
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it)
      if (!ck.find(it.key()))
        fail(index_path, "tensor '" + it.key() + "' is not in " + it.value().get<std::string>());
    return ck;
  }
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(dir))
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(e.path());
  if (files.empty()) fail(dir, "no *.safetensors file and no model.safetensors.index.json");
  std::sort(files.begin(), files.end());
  for (const auto& f : files) ck.add_file(f);
  return ck;
}

const tensor_info* safetensors_checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::span<const std::byte>> safetensors_checkpoint::data_regions() const {
  std::vector<std::span<const std::byte>> out;
  for (const auto& [name, t] : tensors_) out.emplace_back(t.data, static_cast<size_t>(t.bytes));
  return out;
}

}  // namespace xmesh::model
