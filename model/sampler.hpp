// Picks the next token from logits: greedy, or temperature / top-k / top-p with a seeded RNG.
#pragma once

#include <cstdint>
#include <span>

namespace xmesh::model {

/// temperature 0 means greedy (argmax, lowest id on ties); top_k 0 and top_p 1 disable them.
struct sampling_options {
  double temperature = 0.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
};

/// A deterministic sampler: the same seed and logits give the same tokens on every machine.
class sampler {
 public:
  explicit sampler(sampling_options options);
  int32_t next(std::span<const float> logits);

 private:
  double uniform();  // [0, 1)
  sampling_options options_;
  uint64_t state_;
};

}  // namespace xmesh::model
