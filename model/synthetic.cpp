#include "model/synthetic.hpp"

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "model/config.hpp"
#include "model/safetensors_writer.hpp"
#include "model/tokenizer/tokenizer.hpp"
#include "model/weights.hpp"

namespace xmesh::model {

namespace {

using json = nlohmann::ordered_json;

struct preset_shape {
  int64_t hidden, layers, heads, kv_heads, head_dim, experts, top_k, expert_inter, vocab, context;
};

preset_shape find_preset(const std::string& name) {
  if (name == "tiny") return {64, 2, 4, 2, 16, 8, 2, 32, 512, 512};
  if (name == "small") return {256, 4, 8, 4, 32, 16, 4, 128, 4096, 2048};
  if (name == "bench") return {1024, 12, 16, 8, 64, 64, 8, 512, 32000, 4096};
  throw std::runtime_error("--preset: unknown preset '" + name +
                           "' (supported: tiny, small, bench)");
}

// Approximately normal values from a counter-based hash: deterministic per (seed, tensor name),
// fast enough for multi-GB models (sum of four 16-bit uniforms, scaled to unit variance).
std::function<void(std::vector<float>&)> normal_fill(uint64_t seed, const std::string& name,
                                                     float mean, float std) {
  uint64_t h = seed * 0x9E3779B97F4A7C15ull + std::hash<std::string>{}(name);
  return [h, mean, std](std::vector<float>& v) {
    uint64_t state = h;
    const float scale = std / (65535.0f * std::sqrt(4.0f / 12.0f));
    for (auto& x : v) {
      uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      float sum = static_cast<float>((z & 0xFFFF) + ((z >> 16) & 0xFFFF) + ((z >> 32) & 0xFFFF) +
                                     (z >> 48));
      x = mean + (sum - 2.0f * 65535.0f) * scale;
    }
  };
}

// (architecture, model_type) of a family name; throws listing the supported ones.
std::pair<const char*, const char*> family_names(const std::string& family) {
  static const std::map<std::string, std::pair<const char*, const char*>> names = {
      {"mixtral", {"MixtralForCausalLM", "mixtral"}},
      {"qwen2_moe", {"Qwen2MoeForCausalLM", "qwen2_moe"}},
      {"qwen3_moe", {"Qwen3MoeForCausalLM", "qwen3_moe"}},
      {"olmoe", {"OlmoeForCausalLM", "olmoe"}}};
  auto it = names.find(family);
  if (it == names.end())
    throw std::runtime_error("--family: unknown family '" + family +
                             "' (supported: mixtral, qwen2_moe, qwen3_moe, olmoe)");
  return it->second;
}

json make_config(const std::string& family, const preset_shape& p, int64_t vocab,
                 std::optional<int32_t> bos, std::optional<int32_t> eos) {
  json c;
  auto [architecture, model_type] = family_names(family);
  c["architectures"] = {architecture};
  c["model_type"] = model_type;
  c["hidden_size"] = p.hidden;
  c["num_hidden_layers"] = p.layers;
  c["num_attention_heads"] = p.heads;
  c["num_key_value_heads"] = p.kv_heads;
  c["head_dim"] = p.head_dim;
  c["vocab_size"] = vocab;
  c["max_position_embeddings"] = p.context;
  c["rms_norm_eps"] = 1e-6;
  c["rope_theta"] = family == "mixtral" ? 1e6 : 10000.0;
  c["num_experts_per_tok"] = p.top_k;
  c["tie_word_embeddings"] = family == "qwen3_moe";
  if (family == "mixtral") {
    c["num_local_experts"] = p.experts;
    c["intermediate_size"] = p.expert_inter;
  } else if (family == "olmoe") {
    c["num_experts"] = p.experts;
    c["intermediate_size"] = p.expert_inter;
    c["norm_topk_prob"] = false;
    c["clip_qkv"] = nullptr;
  } else {
    c["num_experts"] = p.experts;
    c["moe_intermediate_size"] = p.expert_inter;
    c["intermediate_size"] = 4 * p.expert_inter;
    c["decoder_sparse_step"] = 1;
    c["norm_topk_prob"] = family == "qwen3_moe";
    c["mlp_only_layers"] = family == "qwen2_moe" ? json::array({0}) : json::array();
    if (family == "qwen2_moe") c["shared_expert_intermediate_size"] = 4 * p.expert_inter;
  }
  if (bos) c["bos_token_id"] = *bos;
  if (eos) c["eos_token_id"] = *eos;
  c["torch_dtype"] = "bfloat16";
  return c;
}

void add_ffn(std::vector<tensor_spec>& out, uint64_t seed, const std::string& gate,
             const std::string& up, const std::string& down, int64_t hidden, int64_t inter) {
  float s_in = 1.0f / std::sqrt(static_cast<float>(hidden)),
        s_mid = 1.0f / std::sqrt(static_cast<float>(inter));
  out.push_back({gate, {inter, hidden}, normal_fill(seed, gate, 0.0f, s_in)});
  out.push_back({up, {inter, hidden}, normal_fill(seed, up, 0.0f, s_in)});
  out.push_back({down, {hidden, inter}, normal_fill(seed, down, 0.0f, s_mid)});
}

// The shared direction of skewed models: a unit vector fixed by the seed.
std::vector<float> shared_direction(uint64_t seed, int64_t hidden) {
  std::vector<float> u(hidden);
  normal_fill(seed, "xmesh.skew.direction", 0.0f, 1.0f)(u);
  double norm = 0;
  for (float x : u) norm += double(x) * x;
  for (float& x : u) x = static_cast<float>(x / std::sqrt(norm));
  return u;
}

// Expert popularity rank per layer: a seeded permutation, so each layer has other hot experts.
std::vector<int64_t> popularity_rank(uint64_t seed, int64_t layer, int64_t num_experts) {
  std::vector<int64_t> rank(num_experts);
  for (int64_t e = 0; e < num_experts; ++e) rank[e] = e;
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(layer) + 1;
  for (int64_t i = num_experts - 1; i > 0; --i) {
    z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
    std::swap(rank[i], rank[static_cast<int64_t>((z >> 17) % static_cast<uint64_t>(i + 1))]);
  }
  return rank;
}

// Skew: every embedding row gets m * u (as long as its random part), so a normalised hidden
// state reads about sqrt(hidden / 2) along u; router row e has its u component replaced by
// b_e * u with b_e * sqrt(hidden / 2) = -skew * 1.1 * ln(rank_e + 1). Router noise (std ~1.4
// on such states) acts like Gumbel noise of scale ~1.1, so top-1 popularity goes roughly as
// (rank + 1)^-skew.
void add_skew(std::vector<tensor_spec>& t, const model_config& c, uint64_t seed, double skew) {
  auto u = shared_direction(seed, c.hidden);
  const double read = std::sqrt(static_cast<double>(c.hidden) / 2.0);
  for (auto& spec : t) {
    const bool embed = spec.name == "model.embed_tokens.weight";
    auto layer_of = [&]() -> int64_t {
      for (int64_t l = 0; l < c.num_layers; ++l) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        if (spec.name == p + "block_sparse_moe.gate.weight" || spec.name == p + "mlp.gate.weight")
          return l;
      }
      return -1;
    };
    const int64_t layer = embed ? -1 : layer_of();
    if (!embed && layer < 0) continue;
    auto base = spec.fill;
    const int64_t cols = c.hidden;
    std::vector<int64_t> rank =
        layer >= 0 ? popularity_rank(seed, layer, c.num_experts) : std::vector<int64_t>{};
    spec.fill = [base, u, cols, embed, rank, skew, read](std::vector<float>& v) {
      base(v);
      const int64_t rows = static_cast<int64_t>(v.size()) / cols;
      for (int64_t r = 0; r < rows; ++r) {
        float* row = v.data() + r * cols;
        double dot = 0, sq = 0;
        for (int64_t i = 0; i < cols; ++i)
          dot += double(row[i]) * u[i], sq += double(row[i]) * row[i];
        double add = embed ? std::sqrt(sq) : -dot - skew * 1.1 * std::log(rank[r] + 1.0) / read;
        for (int64_t i = 0; i < cols; ++i) row[i] += static_cast<float>(add * u[i]);
      }
    };
  }
}

std::vector<tensor_spec> make_tensors(const model_config& c, uint64_t seed, double skew) {
  std::vector<tensor_spec> t;
  float s_hidden = 1.0f / std::sqrt(static_cast<float>(c.hidden));
  auto vec = [&](const std::string& name, int64_t n, float mean, float std) {
    t.push_back({name, {n}, normal_fill(seed, name, mean, std)});
  };
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols, float std) {
    t.push_back({name, {rows, cols}, normal_fill(seed, name, 0.0f, std)});
  };
  // A tied embedding is also the LM head: scale it like one (logits std ~ 2), or the last token
  // would dominate its own prediction.
  mat("model.embed_tokens.weight", c.vocab, c.hidden, c.tie_embeddings ? 2.0f * s_hidden : 1.0f);
  int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    vec(p + "input_layernorm.weight", c.hidden, 1.0f, 0.05f);
    vec(p + "post_attention_layernorm.weight", c.hidden, 1.0f, 0.05f);
    mat(p + "self_attn.q_proj.weight", q_out, c.hidden, s_hidden);
    mat(p + "self_attn.k_proj.weight", kv_out, c.hidden, s_hidden);
    mat(p + "self_attn.v_proj.weight", kv_out, c.hidden, s_hidden);
    mat(p + "self_attn.o_proj.weight", c.hidden, q_out,
        1.0f / std::sqrt(static_cast<float>(q_out)));
    if (c.attention_bias)
      for (auto [name, n] : {std::pair{"q", q_out}, {"k", kv_out}, {"v", kv_out}})
        vec(p + "self_attn." + name + "_proj.bias", n, 0.0f, 0.1f);
    if (c.qk_norm != qk_norm_kind::none) {
      bool full = c.qk_norm == qk_norm_kind::full_width;
      vec(p + "self_attn.q_norm.weight", full ? q_out : c.head_dim, 1.0f, 0.05f);
      vec(p + "self_attn.k_norm.weight", full ? kv_out : c.head_dim, 1.0f, 0.05f);
    }
    if (!c.is_moe_layer(l)) {
      add_ffn(t, seed, p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight",
              p + "mlp.down_proj.weight", c.hidden, c.dense_intermediate);
      continue;
    }
    std::string moe = c.arch == family::mixtral ? p + "block_sparse_moe." : p + "mlp.";
    mat(moe + "gate.weight", c.num_experts, c.hidden, 2.0f * s_hidden);  // router logits std ~ 2
    for (int64_t e = 0; e < c.num_experts; ++e) {
      auto n = expert_names(c, l, e);
      add_ffn(t, seed, n.gate, n.up, n.down, c.hidden, c.expert_intermediate);
    }
    if (c.shared_intermediate > 0) {
      std::string s = p + "mlp.shared_expert.";
      add_ffn(t, seed, s + "gate_proj.weight", s + "up_proj.weight", s + "down_proj.weight",
              c.hidden, c.shared_intermediate);
      mat(p + "mlp.shared_expert_gate.weight", 1, c.hidden, s_hidden);
    }
  }
  vec("model.norm.weight", c.hidden, 1.0f, 0.05f);
  if (!c.tie_embeddings) mat("lm_head.weight", c.vocab, c.hidden, 2.0f * s_hidden);
  if (skew > 0) add_skew(t, c, seed, skew);
  return t;
}

void copy_tokenizer(const std::filesystem::path& source, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  fs::copy_file(source, dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  auto config = source.parent_path() / "tokenizer_config.json";
  if (fs::exists(config))
    fs::copy_file(config, dir / "tokenizer_config.json", fs::copy_options::overwrite_existing);
}

}  // namespace

void write_synthetic_weights(const std::filesystem::path& dir, const synthetic_options& o,
                             std::optional<int64_t> vocab, std::optional<int32_t> bos,
                             std::optional<int32_t> eos) {
  preset_shape p = find_preset(o.preset);
  std::filesystem::create_directories(dir);
  json config = make_config(o.family, p, std::max(p.vocab, vocab.value_or(0)), bos, eos);
  if (o.quant) config["quantization_config"] = json::parse(quantization_config_json(*o.quant));
  std::string text = config.dump(2) + "\n";
  std::ofstream(dir / "config.json") << text;
  model_config parsed = parse_config(text, (dir / "config.json").string());
  auto tensors = make_tensors(parsed, o.seed, o.expert_skew);
  if (!o.quant) return write_safetensors(dir / "model.safetensors", tensors, o.type);
  std::vector<stored_tensor> stored;
  for (const auto& t : tensors)
    for (auto& part : store_tensor(t, o.type, *o.quant)) stored.push_back(std::move(part));
  write_safetensors(dir / "model.safetensors", stored);
}

void write_synthetic_model(const std::filesystem::path& dir, const synthetic_options& o) {
  preset_shape p = find_preset(o.preset);
  family_names(o.family);  // validate before writing anything
  std::filesystem::create_directories(dir);
  if (o.tokenizer)
    copy_tokenizer(*o.tokenizer, dir);
  else
    tokenizer::write_demo_tokenizer(dir, static_cast<int32_t>(p.vocab));
  auto tok = tokenizer::tokenizer::load(dir / "tokenizer.json");
  write_synthetic_weights(dir, o, static_cast<int64_t>(tok.vocab_size()), tok.bos_id(),
                          tok.eos_id());
}

}  // namespace xmesh::model
