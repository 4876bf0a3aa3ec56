// The model's tensors by role, mapped from HF names per family and shape-checked, used in place.
#pragma once

#include <map>
#include <optional>
#include <vector>

#include "kernels/expert_ffn.hpp"
#include "model/config.hpp"
#include "model/safetensors.hpp"

namespace xmesh::model {

/// A 1-D tensor (norm weight, bias) in its storage type; does not own.
struct vector_view {
  const void* data = nullptr;
  kernels::dtype type = kernels::dtype::f32;
  int64_t size = 0;

  [[nodiscard]] bool empty() const { return data == nullptr; }
};

/// One decoder layer's tensors.
struct layer_weights {
  vector_view input_norm;
  vector_view post_attention_norm;
  kernels::matrix_view q, k, v, o;
  vector_view q_bias, k_bias, v_bias;  // empty unless the family has attention biases
  vector_view q_norm, k_norm;          // empty unless config.qk_norm != none
  bool moe = false;
  kernels::matrix_view router;  // [experts, hidden]
  std::vector<kernels::expert_weights> experts;
  std::optional<kernels::expert_weights> shared_expert;
  kernels::matrix_view shared_expert_gate;  // [1, hidden]
  kernels::expert_weights dense_mlp;        // when !moe
};

/// Every tensor the forward pass reads, plus the checkpoint that owns their memory.
struct model_weights {
  safetensors_checkpoint checkpoint;
  kernels::matrix_view embed;    // [vocab, hidden]
  kernels::matrix_view lm_head;  // [vocab, hidden], the embedding when tied
  vector_view final_norm;
  std::vector<layer_weights> layers;

  /// Bytes of weights one decode step reads (attention, router, k routed experts, shared and
  /// dense MLPs, norms, LM head, one embedding row): the numerator of the decode roofline.
  [[nodiscard]] int64_t bytes_read_per_token(const model_config& config) const;
  /// Bytes of all tensors in the checkpoint.
  [[nodiscard]] int64_t total_bytes() const;

  /// A partial copy (model/expert_shard.hpp) binds only its experts: no embeddings, attention or
  /// routers, and absent experts have no data.
  bool partial = false;
  /// Whether expert `expert` of `layer` has weights here.
  [[nodiscard]] bool holds(int64_t layer, int64_t expert) const {
    return layers[layer].moe && layers[layer].experts[expert].gate.data != nullptr;
  }
};

/// Maps the checkpoint's tensors to roles for `config`'s family; throws naming a missing tensor
/// or a tensor whose shape differs (expected and found shapes). With `only`, binds just those
/// experts (a partial copy).
model_weights bind_weights(const model_config& config, safetensors_checkpoint checkpoint,
                           const std::map<int64_t, std::vector<int64_t>>* only = nullptr);

/// HF tensor names of one routed expert's gate, up and down projections, per family.
struct expert_tensor_names {
  std::string gate, up, down;
};
expert_tensor_names expert_names(const model_config& config, int64_t layer, int64_t expert);

}  // namespace xmesh::model

namespace xmesh::model {

/// A model directory opened for inference: its config and its mapped weights.
struct loaded_model {
  model_config config;
  model_weights weights;
};

/// Reads config.json and maps the safetensors of `dir`; throws one clear line on any fault.
loaded_model load_model(const std::filesystem::path& dir);

}  // namespace xmesh::model
