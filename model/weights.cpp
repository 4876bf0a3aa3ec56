#include "model/weights.hpp"

#include <stdexcept>

#include "kernels/quant.hpp"
#include "model/expert_shard.hpp"

namespace xmesh::model {

namespace {

// Looks tensors up by name and checks their shapes, types and (quantized) scales.
class binder {
 public:
  binder(const safetensors_checkpoint& ck, quant_method quant) : ck_(ck), quant_(quant) {}

  const tensor_info& require(const std::string& name, const std::vector<int64_t>& shape) const {
    const tensor_info* t = ck_.find(name);
    if (t == nullptr) throw std::runtime_error("missing tensor '" + name + "'");
    if (t->shape != shape)
      throw std::runtime_error(t->file + ": tensor '" + name + "': expected shape " +
                               shape_text(shape) + ", found " + shape_text(t->shape));
    return *t;
  }
  const tensor_info& require(const std::string& name, const std::vector<int64_t>& shape,
                             kernels::dtype type) const {
    const auto& t = require(name, shape);
    if (t.type != type)
      throw std::runtime_error(t.file + ": tensor '" + name + "': expected " +
                               std::string(kernels::dtype_name(type)) + ", found " +
                               std::string(kernels::dtype_name(t.type)));
    return t;
  }
  kernels::matrix_view matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const tensor_info* t = ck_.find(name);
    if (t == nullptr) throw std::runtime_error("missing tensor '" + name + "'");
    using kernels::dtype, kernels::weight_format;
    switch (t->type) {
      case dtype::i8:
        return grouped(*t, weight_format::q8, rows, cols, cols);
      case dtype::u8:
        return grouped(*t, weight_format::q4, rows, cols, cols / 2);
      case dtype::f8_e4m3:
        return fp8(*t, rows, cols);
      default:
        return {require(name, {rows, cols}).data, kernels::plain_format(t->type), rows, cols};
    }
  }
  vector_view vec(const std::string& name, int64_t n) const {
    const auto& t = require(name, {n});
    if (kernels::dtype_size(t.type) == 1)
      throw std::runtime_error(t.file + ": tensor '" + name +
                               "': " + std::string(kernels::dtype_name(t.type)) +
                               " is for quantized matrices, not vectors");
    return {t.data, t.type, n};
  }

 private:
  void expect_method(const tensor_info& t, quant_method m, const char* what) const {
    if (quant_ != m)
      throw std::runtime_error(
          t.file + ": tensor '" + t.name + "' is " + std::string(kernels::dtype_name(t.type)) +
          " (" + what + ") but config.json's quantization_config does not say " +
          (m == quant_method::fp8 ? "quant_method fp8" : "quant_method xmesh"));
  }
  // q8 (stored cols) or q4 (cols / 2 bytes a row), one f16 scale per group of 32 in
  // `.weight_scale`.
  kernels::matrix_view grouped(const tensor_info& t, kernels::weight_format f, int64_t rows,
                               int64_t cols, int64_t stored_cols) const {
    expect_method(t, quant_method::xmesh, f == kernels::weight_format::q8 ? "q8" : "q4");
    if (cols % kernels::quant::group != 0)
      throw std::runtime_error(t.file + ": tensor '" + t.name + "': " + std::to_string(cols) +
                               " columns are not a multiple of the quantization group (32)");
    const auto& data = require(t.name, {rows, stored_cols});
    const auto& scales =
        require(t.name + "_scale", {rows, cols / kernels::quant::group}, kernels::dtype::f16);
    return {data.data, f, rows, cols, scales.data};
  }
  // e4m3 codes, one f32 scale per 128 x 128 block in `.weight_scale_inv`.
  kernels::matrix_view fp8(const tensor_info& t, int64_t rows, int64_t cols) const {
    expect_method(t, quant_method::fp8, "fp8 e4m3");
    const auto& data = require(t.name, {rows, cols});
    const int64_t b = kernels::quant::fp8_block;
    if (rows % b != 0 || cols % b != 0)
      throw std::runtime_error(t.file + ": tensor '" + t.name +
                               "': the 128 x 128 scale block does "
                               "not divide its shape " +
                               shape_text({rows, cols}));
    const auto& scales = require(t.name + "_scale_inv", {rows / b, cols / b}, kernels::dtype::f32);
    return {data.data, kernels::weight_format::fp8, rows, cols, scales.data};
  }

  const safetensors_checkpoint& ck_;
  quant_method quant_;
};

kernels::expert_weights ffn(const binder& b, const std::string& gate, const std::string& up,
                            const std::string& down, int64_t hidden, int64_t inter) {
  return {b.matrix(gate, inter, hidden), b.matrix(up, inter, hidden),
          b.matrix(down, hidden, inter)};
}

void bind_attention(const binder& b, const model_config& c, const std::string& p,
                    layer_weights& l) {
  int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;
  l.q = b.matrix(p + "self_attn.q_proj.weight", q_out, c.hidden);
  l.k = b.matrix(p + "self_attn.k_proj.weight", kv_out, c.hidden);
  l.v = b.matrix(p + "self_attn.v_proj.weight", kv_out, c.hidden);
  l.o = b.matrix(p + "self_attn.o_proj.weight", c.hidden, q_out);
  if (c.attention_bias) {
    l.q_bias = b.vec(p + "self_attn.q_proj.bias", q_out);
    l.k_bias = b.vec(p + "self_attn.k_proj.bias", kv_out);
    l.v_bias = b.vec(p + "self_attn.v_proj.bias", kv_out);
  }
  if (c.qk_norm == qk_norm_kind::per_head) {
    l.q_norm = b.vec(p + "self_attn.q_norm.weight", c.head_dim);
    l.k_norm = b.vec(p + "self_attn.k_norm.weight", c.head_dim);
  } else if (c.qk_norm == qk_norm_kind::full_width) {
    l.q_norm = b.vec(p + "self_attn.q_norm.weight", q_out);
    l.k_norm = b.vec(p + "self_attn.k_norm.weight", kv_out);
  }
}

void bind_mlp(const binder& b, const model_config& c, int64_t layer, const std::string& p,
              layer_weights& l) {
  l.moe = c.is_moe_layer(layer);
  if (!l.moe) {
    l.dense_mlp = ffn(b, p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight",
                      p + "mlp.down_proj.weight", c.hidden, c.dense_intermediate);
    return;
  }
  std::string moe = c.arch == family::mixtral ? p + "block_sparse_moe." : p + "mlp.";
  l.router = b.matrix(moe + "gate.weight", c.num_experts, c.hidden);
  for (int64_t e = 0; e < c.num_experts; ++e) {
    auto n = expert_names(c, layer, e);
    l.experts.push_back(ffn(b, n.gate, n.up, n.down, c.hidden, c.expert_intermediate));
  }
  if (c.arch == family::qwen2_moe && c.shared_intermediate > 0) {
    std::string s = p + "mlp.shared_expert.";
    l.shared_expert = ffn(b, s + "gate_proj.weight", s + "up_proj.weight", s + "down_proj.weight",
                          c.hidden, c.shared_intermediate);
    l.shared_expert_gate = b.matrix(p + "mlp.shared_expert_gate.weight", 1, c.hidden);
  }
}

int64_t vector_bytes(const vector_view& v) {
  return v.empty() ? 0 : v.size * static_cast<int64_t>(kernels::dtype_size(v.type));
}

}  // namespace

expert_tensor_names expert_names(const model_config& c, int64_t layer, int64_t expert) {
  std::string p = "model.layers." + std::to_string(layer) + ".";
  if (c.arch == family::mixtral) {
    std::string e = p + "block_sparse_moe.experts." + std::to_string(expert) + ".";
    return {e + "w1.weight", e + "w3.weight", e + "w2.weight"};
  }
  std::string e = p + "mlp.experts." + std::to_string(expert) + ".";
  return {e + "gate_proj.weight", e + "up_proj.weight", e + "down_proj.weight"};
}

model_weights bind_weights(const model_config& c, safetensors_checkpoint checkpoint,
                           const std::map<int64_t, std::vector<int64_t>>* only) {
  model_weights w;
  w.checkpoint = std::move(checkpoint);
  binder b(w.checkpoint, c.quant);
  if (only != nullptr) {
    w.partial = true;
    w.layers.resize(c.num_layers);
    for (int64_t layer = 0; layer < c.num_layers; ++layer) {
      w.layers[layer].moe = c.is_moe_layer(layer);
      if (w.layers[layer].moe) w.layers[layer].experts.resize(c.num_experts);
    }
    for (const auto& [layer, ids] : *only)
      for (int64_t e : ids) {
        if (layer < 0 || layer >= c.num_layers || !w.layers[layer].moe || e < 0 ||
            e >= c.num_experts)
          throw std::runtime_error("partial copy lists expert " + std::to_string(e) + " of layer " +
                                   std::to_string(layer) + ", which the model does not have");
        auto n = expert_names(c, layer, e);
        w.layers[layer].experts[e] = ffn(b, n.gate, n.up, n.down, c.hidden, c.expert_intermediate);
      }
    // Absent experts keep the layout (shapes, format) of a held one and no data: a peer can
    // stream them in.
    const kernels::expert_weights* layout = nullptr;
    for (const auto& l : w.layers)
      for (const auto& e : l.experts)
        if (layout == nullptr && e.gate.data != nullptr) layout = &e;
    if (layout == nullptr) throw std::runtime_error("partial copy holds no expert");
    kernels::expert_weights absent = *layout;
    for (auto* m : {&absent.gate, &absent.up, &absent.down}) m->data = m->scales = nullptr;
    for (auto& l : w.layers)
      for (auto& e : l.experts)
        if (e.gate.data == nullptr) e = absent;
    return w;
  }
  w.embed = b.matrix("model.embed_tokens.weight", c.vocab, c.hidden);
  w.final_norm = b.vec("model.norm.weight", c.hidden);
  w.lm_head = c.tie_embeddings ? w.embed : b.matrix("lm_head.weight", c.vocab, c.hidden);
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    std::string p = "model.layers." + std::to_string(layer) + ".";
    layer_weights l;
    l.input_norm = b.vec(p + "input_layernorm.weight", c.hidden);
    l.post_attention_norm = b.vec(p + "post_attention_layernorm.weight", c.hidden);
    bind_attention(b, c, p, l);
    bind_mlp(b, c, layer, p, l);
    w.layers.push_back(std::move(l));
  }
  return w;
}

int64_t model_weights::bytes_read_per_token(const model_config& c) const {
  int64_t bytes = embed.bytes() / embed.rows + lm_head.bytes() + vector_bytes(final_norm);
  for (const auto& l : layers) {
    bytes += l.q.bytes() + l.k.bytes() + l.v.bytes() + l.o.bytes();
    for (const auto* v : {&l.input_norm, &l.post_attention_norm, &l.q_bias, &l.k_bias, &l.v_bias,
                          &l.q_norm, &l.k_norm})
      bytes += vector_bytes(*v);
    if (!l.moe) {
      bytes += l.dense_mlp.bytes();
      continue;
    }
    bytes += l.router.bytes() + c.top_k * l.experts.front().bytes();
    if (l.shared_expert) bytes += l.shared_expert->bytes() + l.shared_expert_gate.bytes();
  }
  return bytes;
}

int64_t model_weights::total_bytes() const {
  int64_t bytes = 0;
  for (const auto& [name, t] : checkpoint.tensors()) bytes += t.bytes;
  return bytes;
}

}  // namespace xmesh::model

namespace xmesh::model {

loaded_model load_model(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir))
    throw std::runtime_error(dir.string() + ": not a model directory");
  model_config config = load_config(dir);
  auto shard = read_expert_shard(dir);
  model_weights weights =
      bind_weights(config, safetensors_checkpoint::open(dir), shard ? &*shard : nullptr);
  return {std::move(config), std::move(weights)};
}

}  // namespace xmesh::model
