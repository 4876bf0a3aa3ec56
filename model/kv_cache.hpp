// Keys and values of the positions a sequence has processed, per layer and KV head.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.hpp"
#include "model/routing_policy.hpp"

namespace xmesh::model {

/// f32 cache laid out [layer][kv_head][position][head_dim], sized for `capacity` positions.
class kv_cache {
 public:
  kv_cache(const model_config& config, int64_t capacity);

  [[nodiscard]] int64_t length() const { return length_; }
  [[nodiscard]] int64_t capacity() const { return capacity_; }
  /// Row of `head_dim` floats for (layer, kv head, position).
  float* key(int64_t layer, int64_t head, int64_t pos) {
    return keys_.data() + offset(layer, head, pos);
  }
  float* value(int64_t layer, int64_t head, int64_t pos) {
    return values_.data() + offset(layer, head, pos);
  }
  /// Marks `n` more positions as filled (after every layer has written them).
  void advance(int64_t n) { length_ += n; }

  /// The sequence's logical expert cache, which routing policies read (made on first use).
  std::unique_ptr<expert_cache_model> routing;

 private:
  [[nodiscard]] int64_t offset(int64_t layer, int64_t head, int64_t pos) const {
    return ((layer * num_kv_heads_ + head) * capacity_ + pos) * head_dim_;
  }
  int64_t num_kv_heads_, head_dim_, capacity_;
  int64_t length_ = 0;
  std::vector<float> keys_, values_;
};

}  // namespace xmesh::model
