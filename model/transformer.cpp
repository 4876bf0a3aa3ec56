#include "model/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/attention.hpp"
#include "kernels/ops.hpp"
#include "model/moe_block.hpp"

namespace xmesh::model {

namespace {

void add_bias(const vector_view& bias, int64_t num_tokens, float* x) {
  if (bias.empty()) return;
  std::vector<float> b(bias.size);
  kernels::to_f32(bias.data, bias.type, bias.size, b.data());
  for (int64_t t = 0; t < num_tokens; ++t)
    for (int64_t i = 0; i < bias.size; ++i) x[t * bias.size + i] += b[i];
}

// RMSNorm of every `width`-wide row of `x` in place (rows = whole projection or one head).
void norm_rows(const vector_view& w, float eps, int64_t rows, int64_t width, float* x) {
  std::vector<float> tmp(width);
  for (int64_t r = 0; r < rows; ++r) {
    kernels::rms_norm(x + r * width, w.data, w.type, width, eps, tmp.data());
    std::copy(tmp.begin(), tmp.end(), x + r * width);
  }
}

void clamp_all(std::vector<float>& v, int64_t n, float limit) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::clamp(v[i], -limit, limit);
}

}  // namespace

transformer::transformer(const model_config& config, const model_weights& weights,
                         kernels::thread_pool& pool, expert_backend& experts)
    : config_(config), weights_(weights), pool_(pool), experts_(experts) {}

void transformer::project_qkv(const layer_weights& l, const float* x, int64_t n) {
  const auto& c = config_;
  int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;
  q_.resize(n * q_out);
  k_.resize(n * kv_out);
  v_.resize(n * kv_out);
  kernels::matmul(x, n, c.hidden, l.q, q_.data(), q_out, pool_);
  kernels::matmul(x, n, c.hidden, l.k, k_.data(), kv_out, pool_);
  kernels::matmul(x, n, c.hidden, l.v, v_.data(), kv_out, pool_);
  add_bias(l.q_bias, n, q_.data());
  add_bias(l.k_bias, n, k_.data());
  add_bias(l.v_bias, n, v_.data());
  if (c.qk_norm == qk_norm_kind::full_width) {
    norm_rows(l.q_norm, c.rms_eps, n, q_out, q_.data());
    norm_rows(l.k_norm, c.rms_eps, n, kv_out, k_.data());
  } else if (c.qk_norm == qk_norm_kind::per_head) {
    norm_rows(l.q_norm, c.rms_eps, n * c.num_heads, c.head_dim, q_.data());
    norm_rows(l.k_norm, c.rms_eps, n * c.num_kv_heads, c.head_dim, k_.data());
  }
  if (c.clip_qkv) {
    clamp_all(q_, n * q_out, *c.clip_qkv);
    clamp_all(k_, n * kv_out, *c.clip_qkv);
    clamp_all(v_, n * kv_out, *c.clip_qkv);
  }
}

void transformer::attention(int64_t layer, const float* x, int64_t n, kv_cache& cache, float* out) {
  const auto& c = config_;
  const auto& l = weights_.layers[layer];
  const int64_t hd = c.head_dim, q_out = c.num_heads * hd, kv_out = c.num_kv_heads * hd;
  const int64_t start = cache.length();
  project_qkv(l, x, n);
  for (int64_t t = 0; t < n; ++t) {
    kernels::rope(q_.data() + t * q_out, c.num_heads, hd, start + t, c.rope_theta);
    kernels::rope(k_.data() + t * kv_out, c.num_kv_heads, hd, start + t, c.rope_theta);
    for (int64_t h = 0; h < c.num_kv_heads; ++h) {
      std::copy_n(k_.data() + t * kv_out + h * hd, hd, cache.key(layer, h, start + t));
      std::copy_n(v_.data() + t * kv_out + h * hd, hd, cache.value(layer, h, start + t));
    }
  }
  attn_.resize(n * q_out);
  const int64_t group = c.num_heads / c.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pool_.parallel_for(n * c.num_heads, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(start + n);
    for (int64_t item = begin; item < end; ++item) {
      int64_t t = item / c.num_heads, h = item % c.num_heads, kvh = h / group;
      kernels::attend_head(q_.data() + t * q_out + h * hd, cache.key(layer, kvh, 0),
                           cache.value(layer, kvh, 0), start + t + 1, hd, scale, scores.data(),
                           attn_.data() + t * q_out + h * hd);
    }
  });
  kernels::matmul(attn_.data(), n, q_out, l.o, out, c.hidden, pool_);
}

void transformer::mlp(int64_t layer, const float* x, int64_t n, kv_cache& cache, float* out) {
  const auto& l = weights_.layers[layer];
  if (l.moe && policy_.enabled && !cache.routing)
    cache.routing = std::make_unique<expert_cache_model>(config_, policy_);
  if (l.moe && observer_) observer_(layer, x, n, policy_.enabled ? cache.routing.get() : nullptr);
  if (l.moe && policy_.enabled) {
    routing_context policy{&policy_, cache.routing.get(), &counters_};
    moe_forward(config_, l, layer, x, n, experts_, pool_, out, &policy);
  } else if (l.moe) {
    moe_forward(config_, l, layer, x, n, experts_, pool_, out);
  } else {
    dense_mlp_forward(l.dense_mlp, x, n, pool_, out);
  }
}

void transformer::forward(std::span<const int32_t> tokens, kv_cache& cache, logits_for which,
                          std::vector<float>& logits) {
  const auto& c = config_;
  const auto n = static_cast<int64_t>(tokens.size());
  const int64_t hidden = c.hidden;
  if (cache.length() + n > cache.capacity())
    throw std::runtime_error("sequence of " + std::to_string(cache.length() + n) +
                             " positions exceeds the context of " +
                             std::to_string(cache.capacity()));
  std::vector<float> h(n * hidden), normed(n * hidden), delta(n * hidden);
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab)
      throw std::runtime_error("token id " + std::to_string(tokens[t]) +
                               " outside the vocabulary [0, " + std::to_string(c.vocab) + ")");
    kernels::row_to_f32(weights_.embed, tokens[t], h.data() + t * hidden);
  }
  auto norm_all = [&](const vector_view& w) {
    for (int64_t t = 0; t < n; ++t)
      kernels::rms_norm(h.data() + t * hidden, w.data, w.type, hidden, c.rms_eps,
                        normed.data() + t * hidden);
  };
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    const auto& l = weights_.layers[layer];
    norm_all(l.input_norm);
    attention(layer, normed.data(), n, cache, delta.data());
    for (int64_t i = 0; i < n * hidden; ++i) h[i] += delta[i];
    norm_all(l.post_attention_norm);
    mlp(layer, normed.data(), n, cache, delta.data());
    for (int64_t i = 0; i < n * hidden; ++i) h[i] += delta[i];
  }
  cache.advance(n);
  norm_all(weights_.final_norm);
  int64_t first = which == logits_for::all ? 0 : n - 1;
  logits.resize((n - first) * c.vocab);
  kernels::matmul(normed.data() + first * hidden, n - first, hidden, weights_.lm_head,
                  logits.data(), c.vocab, pool_);
}

}  // namespace xmesh::model
