// A model's HF config.json, reduced to what the forward pass needs, per family.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace xmesh::model {

/// The MoE families the engine runs exactly as their reference implementations.
enum class family { mixtral, qwen2_moe, qwen3_moe, olmoe };

/// How queries and keys are normalised before RoPE.
enum class qk_norm_kind { none, per_head, full_width };

/// config.json's `quantization_config.quant_method`: which quantized tensors a checkpoint holds.
/// xmesh: q8/q4 group-quantized linear weights (`xmesh quantize`, docs/quantization.md); fp8:
/// e4m3 weights with a `weight_scale_inv` per 128 x 128 block (DeepSeek-V3, Qwen3 FP8).
enum class quant_method { none, xmesh, fp8 };

/// Everything of config.json the forward pass reads, defaults applied as HF applies them.
struct model_config {
  family arch = family::mixtral;
  std::string architecture;  // e.g. "MixtralForCausalLM"
  int64_t hidden = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab = 0;
  int64_t max_positions = 0;
  int64_t dense_intermediate = 0;   // dense MLP layers (Qwen mlp_only_layers / sparse step)
  int64_t expert_intermediate = 0;  // one routed expert
  int64_t shared_intermediate = 0;  // Qwen2-MoE shared expert, 0 when absent
  int64_t num_experts = 0;
  int32_t top_k = 0;
  bool norm_topk_prob = false;
  double rope_theta = 10000.0;
  float rms_eps = 1e-6f;
  bool tie_embeddings = false;
  bool attention_bias = false;
  std::optional<float> clip_qkv;
  qk_norm_kind qk_norm = qk_norm_kind::none;
  std::vector<int64_t> mlp_only_layers;
  int64_t decoder_sparse_step = 1;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;
  quant_method quant = quant_method::none;

  /// True when `layer` has a routed MoE block (false: a dense MLP).
  [[nodiscard]] bool is_moe_layer(int64_t layer) const;
};

/// Names of the supported `architectures` entries, for error messages.
std::string supported_architectures();

/// Reads `dir/config.json`; throws std::runtime_error naming the file and field at fault.
model_config load_config(const std::filesystem::path& dir);

/// Parses config.json text (`origin` names it in errors).
model_config parse_config(const std::string& json_text, const std::string& origin);

/// What names a model across processes: its directory's name and a hash of its config.json
/// (parsed, so formatting does not count; without quantization_config, so a quantized copy is
/// the same model), e.g. "mixtral-tiny (config 3f2a9c01d4e5b677)".
std::string model_identity(const std::filesystem::path& dir);
/// Whether two model_identity strings name the same model: their config hashes are equal (the
/// directory names may differ: a copy is the same model).
bool same_model(const std::string& a, const std::string& b);

}  // namespace xmesh::model
