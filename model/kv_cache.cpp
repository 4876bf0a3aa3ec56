#include "model/kv_cache.hpp"

namespace xmesh::model {

kv_cache::kv_cache(const model_config& c, int64_t capacity)
    : num_kv_heads_(c.num_kv_heads), head_dim_(c.head_dim), capacity_(capacity) {
  size_t n = static_cast<size_t>(c.num_layers * c.num_kv_heads * capacity * c.head_dim);
  keys_.resize(n);
  values_.resize(n);
}

}  // namespace xmesh::model
