#include "model/config.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace xmesh::model {

namespace {

using json = nlohmann::json;

struct arch_entry {
  const char* architecture;
  const char* model_type;
  family arch;
};

constexpr arch_entry architectures[] = {
    {"MixtralForCausalLM", "mixtral", family::mixtral},
    {"Qwen2MoeForCausalLM", "qwen2_moe", family::qwen2_moe},
    {"Qwen3MoeForCausalLM", "qwen3_moe", family::qwen3_moe},
    {"OlmoeForCausalLM", "olmoe", family::olmoe},
};

// Typed field access with errors that name the file and the field.
class reader {
 public:
  reader(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  template <class T>
  T get(const char* key) const {
    if (!j_.contains(key) || j_[key].is_null()) fail(key, "missing");
    return as<T>(key);
  }
  template <class T>
  T get(const char* key, T fallback) const {
    if (!j_.contains(key) || j_[key].is_null()) return fallback;
    return as<T>(key);
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw std::runtime_error(origin_ + ": field '" + key + "': " + what);
  }
  const json& raw() const { return j_; }

 private:
  template <class T>
  T as(const char* key) const {
    const json& v = j_[key];
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) fail(key, "expected true or false");
    } else if constexpr (std::is_integral_v<T>) {
      if (!v.is_number_integer()) fail(key, "expected an integer");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) fail(key, "expected a number");
    } else {
      if (!v.is_array() ||
          !std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number_integer(); }))
        fail(key, "expected a list of integers");
    }
    return v.get<T>();
  }
  const json& j_;
  std::string origin_;
};

const arch_entry& find_architecture(const reader& r) {
  std::string name;
  const json& j = r.raw();
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    name = j["architectures"][0].get<std::string>();
    for (const auto& a : architectures)
      if (name == a.architecture) return a;
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    name = j["model_type"].get<std::string>();
    for (const auto& a : architectures)
      if (name == a.model_type) return a;
  } else {
    r.fail("architectures", "missing (and no model_type)");
  }
  r.fail("architectures",
         "unsupported architecture '" + name + "' (supported: " + supported_architectures() + ")");
}

void read_family_fields(const reader& r, model_config& c) {
  switch (c.arch) {
    case family::mixtral:
      c.num_experts = r.get<int64_t>("num_local_experts");
      c.expert_intermediate = r.get<int64_t>("intermediate_size");
      c.norm_topk_prob = true;  // Mixtral always renormalises its top-k
      c.max_positions = r.get<int64_t>("max_position_embeddings", 4096 * 32);
      break;
    case family::olmoe:
      c.num_experts = r.get<int64_t>("num_experts");
      c.expert_intermediate = r.get<int64_t>("intermediate_size");
      c.norm_topk_prob = r.get<bool>("norm_topk_prob", false);
      c.qk_norm = qk_norm_kind::full_width;
      c.attention_bias = r.get<bool>("attention_bias", false);
      if (r.raw().contains("clip_qkv") && !r.raw()["clip_qkv"].is_null())
        c.clip_qkv = r.get<float>("clip_qkv");
      c.max_positions = r.get<int64_t>("max_position_embeddings", 4096);
      break;
    case family::qwen2_moe:
    case family::qwen3_moe:
      c.num_experts = r.get<int64_t>("num_experts");
      c.expert_intermediate = r.get<int64_t>("moe_intermediate_size");
      c.dense_intermediate = r.get<int64_t>("intermediate_size", 0);
      c.norm_topk_prob = r.get<bool>("norm_topk_prob", false);
      c.decoder_sparse_step = r.get<int64_t>("decoder_sparse_step", 1);
      c.mlp_only_layers = r.get<std::vector<int64_t>>("mlp_only_layers", {});
      c.max_positions = r.get<int64_t>("max_position_embeddings", 32768);
      if (c.arch == family::qwen2_moe) {
        c.shared_intermediate = r.get<int64_t>("shared_expert_intermediate_size", 0);
        c.attention_bias = true;  // Qwen2 attention always has q/k/v biases
      } else {
        c.qk_norm = qk_norm_kind::per_head;
        c.attention_bias = r.get<bool>("attention_bias", false);
      }
      break;
  }
}

void read_special_tokens(const reader& r, model_config& c) {
  const json& j = r.raw();
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
    c.bos_token_id = j["bos_token_id"].get<int32_t>();
  if (j.contains("eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int32_t>());
    if (e.is_array())
      for (const auto& v : e)
        if (v.is_number_integer()) c.eos_token_ids.push_back(v.get<int32_t>());
  }
}

// quantization_config, as HF writes it for FP8 checkpoints and `xmesh quantize` for its own.
quant_method read_quantization(const json& j, const std::string& origin) {
  if (!j.contains("quantization_config") || j["quantization_config"].is_null())
    return quant_method::none;
  reader q(j["quantization_config"], origin + ": quantization_config");
  if (!q.raw().is_object()) q.fail("quantization_config", "expected an object");
  if (!q.raw().contains("quant_method") || !q.raw()["quant_method"].is_string())
    q.fail("quant_method", "missing");
  auto method = q.raw()["quant_method"].get<std::string>();
  if (method == "fp8") {
    if (q.raw().contains("fmt") && q.raw()["fmt"] != "e4m3")
      q.fail("fmt", "unsupported fp8 format " + q.raw()["fmt"].dump() + " (supported: e4m3)");
    auto block = q.get<std::vector<int64_t>>("weight_block_size", {128, 128});
    if (block != std::vector<int64_t>{128, 128})
      q.fail("weight_block_size", "unsupported block size (supported: [128, 128])");
    return quant_method::fp8;
  }
  if (method == "xmesh") {
    auto group = q.get<int64_t>("group_size");
    if (group != 32)
      q.fail("group_size", "unsupported " + std::to_string(group) + " (supported: 32)");
    return quant_method::xmesh;
  }
  q.fail("quant_method", "unsupported '" + method + "' (supported: xmesh, fp8)");
}

void validate(const reader& r, const model_config& c) {
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) r.fail(key, "must be positive, got " + std::to_string(v));
  };
  positive("hidden_size", c.hidden);
  positive("num_hidden_layers", c.num_layers);
  positive("num_attention_heads", c.num_heads);
  positive("num_key_value_heads", c.num_kv_heads);
  positive("head_dim", c.head_dim);
  positive("vocab_size", c.vocab);
  positive("max_position_embeddings", c.max_positions);
  positive("num_experts_per_tok", c.top_k);
  positive("decoder_sparse_step", c.decoder_sparse_step);
  if (c.num_experts < c.top_k)
    r.fail("num_experts",
           "fewer experts (" + std::to_string(c.num_experts) + ") than num_experts_per_tok");
  if (c.num_heads % c.num_kv_heads != 0)
    r.fail("num_key_value_heads", "must divide num_attention_heads");
  if (c.head_dim % 2 != 0) r.fail("head_dim", "must be even for rotary embeddings");
  bool any_dense = false;
  for (int64_t l = 0; l < c.num_layers; ++l) any_dense |= !c.is_moe_layer(l);
  if (any_dense && c.dense_intermediate <= 0)
    r.fail("intermediate_size", "required and positive when some layers are dense");
}

}  // namespace

bool model_config::is_moe_layer(int64_t layer) const {
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end())
    return false;
  return num_experts > 0 && (layer + 1) % decoder_sparse_step == 0;
}

std::string supported_architectures() {
  std::string out;
  for (const auto& a : architectures) {
    if (!out.empty()) out += ", ";
    out += a.architecture;
  }
  return out;
}

model_config parse_config(const std::string& json_text, const std::string& origin) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw std::runtime_error(origin + ": not a valid JSON object");
  reader r(j, origin);
  model_config c;
  const arch_entry& a = find_architecture(r);
  c.arch = a.arch;
  c.architecture = a.architecture;
  c.hidden = r.get<int64_t>("hidden_size");
  c.num_layers = r.get<int64_t>("num_hidden_layers");
  c.num_heads = r.get<int64_t>("num_attention_heads");
  c.num_kv_heads = r.get<int64_t>("num_key_value_heads", c.num_heads);
  c.head_dim = r.get<int64_t>("head_dim", c.num_heads > 0 ? c.hidden / c.num_heads : 0);
  c.vocab = r.get<int64_t>("vocab_size");
  c.top_k = r.get<int32_t>("num_experts_per_tok");
  c.rms_eps = r.get<float>("rms_norm_eps", 1e-6f);
  c.rope_theta = r.get<double>("rope_theta", c.arch == family::mixtral ? 1e6 : 10000.0);
  c.tie_embeddings = r.get<bool>("tie_word_embeddings", false);
  read_family_fields(r, c);
  read_special_tokens(r, c);
  c.quant = read_quantization(j, origin);
  validate(r, c);
  return c;
}

model_config load_config(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir))
    throw std::runtime_error(dir.string() + ": not a model directory");
  auto path = dir / "config.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path.string());
}

std::string model_identity(const std::filesystem::path& dir) {
  auto path = dir / "config.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  std::string canonical;
  try {
    json j = json::parse(in);
    // A quantized copy (xmesh quantize) is the same model: nodes may hold their own form of it.
    if (j.is_object()) j.erase("quantization_config");
    canonical = j.dump();  // keys sorted, no whitespace
  } catch (const json::exception& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
  uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across builds and processes
  for (unsigned char c : canonical) h = (h ^ c) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  auto where = std::filesystem::absolute(dir).lexically_normal();
  if (!where.has_filename()) where = where.parent_path();  // "dir/"
  return where.filename().string() + " (config " + hex + ")";
}

bool same_model(const std::string& a, const std::string& b) {
  auto hash = [](const std::string& id) {
    auto at = id.rfind(" (config ");
    return at == std::string::npos ? id : id.substr(at);
  };
  return hash(a) == hash(b);
}

}  // namespace xmesh::model
