#include "model/routing_stats.hpp"

#include <algorithm>
#include <cmath>

#include "kernels/topk_gating.hpp"

namespace xmesh::model {

namespace {

// |a & b| over two k-sets of expert ids.
int overlap(const int32_t* a, const int32_t* b, int64_t k) {
  int n = 0;
  for (int64_t i = 0; i < k; ++i) n += std::count(b, b + k, a[i]) > 0;
  return n;
}

}  // namespace

routing_stats::routing_stats(const model_config& config, const model_weights& weights,
                             kernels::thread_pool& pool)
    : config_(config),
      weights_(weights),
      pool_(pool),
      counts_(config.num_layers, std::vector<int64_t>(config.num_experts, 0)),
      reuse_sum_(config.num_layers, 0),
      pregate_sum_(config.num_layers, 0),
      reuse_n_(config.num_layers, 0),
      pregate_n_(config.num_layers, 0),
      tokens_(config.num_layers, 0) {}

void routing_stats::scored_rows(int64_t first, int64_t end) {
  first_ = first, end_ = end;
  predicted_layer_ = -1;  // a prediction never crosses windows
}

std::vector<int32_t> routing_stats::top_k(int64_t layer, const float* x, int64_t n) {
  std::vector<float> logits(n * config_.num_experts), weights(n * config_.top_k);
  kernels::matmul(x, n, config_.hidden, weights_.layers[layer].router, logits.data(),
                  config_.num_experts, pool_);
  std::vector<int32_t> ids(n * config_.top_k);
  kernels::topk_gating(logits.data(), n, config_.num_experts, config_.top_k, false, ids.data(),
                       weights.data());
  return ids;
}

void routing_stats::observe(int64_t layer, const float* x, int64_t n) {
  const int64_t k = config_.top_k;
  auto chosen = top_k(layer, x, n);  // the same experts moe_forward picks
  for (int64_t r = first_; r < std::min(end_, n); ++r) {
    for (int64_t i = 0; i < k; ++i) ++counts_[layer][chosen[r * k + i]];
    ++tokens_[layer];
    if (r > 0) {
      reuse_sum_[layer] += overlap(&chosen[r * k], &chosen[(r - 1) * k], k) / double(k);
      ++reuse_n_[layer];
    }
    if (predicted_layer_ == layer) {
      pregate_sum_[predictor_] += overlap(&predicted_[r * k], &chosen[r * k], k) / double(k);
      ++pregate_n_[predictor_];
    }
  }
  predicted_layer_ = -1;
  for (int64_t next = layer + 1; next < config_.num_layers; ++next)
    if (weights_.layers[next].moe) {
      predicted_ = top_k(next, x, n);
      predictor_ = layer, predicted_layer_ = next;
      break;
    }
}

std::vector<routing_stats::layer_report> routing_stats::report() const {
  std::vector<layer_report> out;
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    if (!weights_.layers[l].moe) continue;
    layer_report r;
    r.layer = l;
    r.tokens = tokens_[l];
    double total = 0;
    for (auto c : counts_[l]) total += static_cast<double>(c);
    for (auto c : counts_[l]) r.share.push_back(total > 0 ? c / total : 0);
    std::vector<double> sorted = r.share;
    std::sort(sorted.rbegin(), sorted.rend());
    double sx = 0, sy = 0, sxx = 0, sxy = 0, m = 0;
    for (size_t i = 0; i < sorted.size() && sorted[i] > 0; ++i, ++m) {
      double lx = std::log(static_cast<double>(i + 1)), ly = std::log(sorted[i]);
      sx += lx, sy += ly, sxx += lx * lx, sxy += lx * ly;
    }
    if (m >= 2) r.zipf_exponent = -(m * sxy - sx * sy) / (m * sxx - sx * sx);
    r.reuse_previous = reuse_n_[l] ? reuse_sum_[l] / static_cast<double>(reuse_n_[l]) : 0;
    if (pregate_n_[l]) r.pregate_accuracy = pregate_sum_[l] / static_cast<double>(pregate_n_[l]);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace xmesh::model
