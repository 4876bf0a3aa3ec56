// Synthetic models in HF layout: real config.json, safetensors and tokenizer.json, random weights
// scaled so activations and routing look like a trained model's (router logits std ~ 2).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "kernels/core/dtype.hpp"
#include "model/quantize.hpp"

namespace xmesh::model {

/// What `xmesh gen-model` writes.
struct synthetic_options {
  std::string family = "mixtral";  // mixtral, qwen2_moe, qwen3_moe, olmoe
  std::string preset = "tiny";     // tiny, small, bench
  uint64_t seed = 0;
  kernels::dtype type = kernels::dtype::f32;
  /// Quantize the weights of the `type` model (`xmesh quantize` of it gives the same files).
  std::optional<quantize_options> quant;
  /// > 0: expert popularity roughly Zipf(expert_skew) on ordinary inputs (a shared direction in
  /// every embedding that the router rows read with a per-expert weight); 0: uniform.
  double expert_skew = 0;
  std::optional<std::filesystem::path>
      tokenizer;  // copy this tokenizer.json instead of the demo one
};

/// Writes config.json and model.safetensors only: a model driven by token ids, with the preset's
/// vocabulary (at least `vocab`) and the given special tokens.
void write_synthetic_weights(const std::filesystem::path& dir, const synthetic_options& options,
                             std::optional<int64_t> vocab = {}, std::optional<int32_t> bos = {},
                             std::optional<int32_t> eos = {});

/// Writes config.json, model.safetensors, tokenizer.json (+ tokenizer_config.json) into `dir`.
/// Throws std::runtime_error naming a bad family or preset.
void write_synthetic_model(const std::filesystem::path& dir, const synthetic_options& options);

}  // namespace xmesh::model
