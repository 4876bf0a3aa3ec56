#include "model/expert_shard.hpp"

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "model/config.hpp"
#include "model/safetensors.hpp"
#include "model/safetensors_writer.hpp"
#include "model/weights.hpp"

namespace xmesh::model {

int64_t write_expert_shard(const std::filesystem::path& source, const std::filesystem::path& out,
                           const expert_set& experts) {
  namespace fs = std::filesystem;
  if (fs::exists(out) && fs::equivalent(source, out))
    throw std::runtime_error(out.string() + ": the partial copy must not replace the model");
  int64_t held = 0;
  for (const auto& [layer, ids] : experts) held += static_cast<int64_t>(ids.size());
  if (held == 0)
    throw std::runtime_error(out.string() +
                             ": no expert to write (the placement gives the node "
                             "none)");
  model_config config = load_config(source);
  auto checkpoint = safetensors_checkpoint::open(source);
  std::vector<stored_tensor> stored;
  int64_t bytes = 0;
  nlohmann::ordered_json list = nlohmann::ordered_json::object();
  for (const auto& [layer, ids] : experts) {
    list[std::to_string(layer)] = ids;
    for (int64_t e : ids) {
      auto names = expert_names(config, layer, e);
      for (const auto& base : {names.gate, names.up, names.down})
        for (const auto& name : {base, base + "_scale", base + "_scale_inv"}) {
          const tensor_info* t = checkpoint.find(name);
          if (t == nullptr && name == base)
            throw std::runtime_error(source.string() + ": no tensor '" + name + "' for expert " +
                                     std::to_string(e) + " of layer " + std::to_string(layer));
          if (t == nullptr) continue;
          stored.push_back({name, t->type, t->shape, [t](std::vector<std::byte>& b) {
                              b.assign(t->data, t->data + t->bytes);
                            }});
          bytes += t->bytes;
        }
    }
  }
  write_model_weights(out, stored);
  fs::copy_file(source / "config.json", out / "config.json", fs::copy_options::overwrite_existing);
  std::ofstream(out / expert_shard_file)
      << nlohmann::ordered_json{{"experts", list}}.dump(2) << "\n";
  return bytes;
}

std::optional<expert_set> read_expert_shard(const std::filesystem::path& dir) {
  auto path = dir / expert_shard_file;
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path);
  auto j = nlohmann::json::parse(in, nullptr, false);
  auto bad = [&] {
    return std::runtime_error(path.string() + ": expected {\"experts\": {LAYER: [IDS]}}");
  };
  if (j.is_discarded() || !j.is_object() || !j.contains("experts") || !j["experts"].is_object())
    throw bad();
  expert_set out;
  for (const auto& [layer, ids] : j["experts"].items()) {
    if (!ids.is_array()) throw bad();
    try {
      auto& v = out[std::stoll(layer)];
      for (const auto& id : ids) v.push_back(id.get<int64_t>());
    } catch (const std::exception&) {
      throw bad();
    }
  }
  return out;
}

}  // namespace xmesh::model
