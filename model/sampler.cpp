#include "model/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace xmesh::model {

sampler::sampler(sampling_options options) : options_(options), state_(options.seed) {}

double sampler::uniform() {
  // splitmix64: tiny, portable, and fully specified (unlike std:: distributions).
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int32_t sampler::next(std::span<const float> logits) {
  if (options_.temperature <= 0.0)
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = ids.size();
  if (options_.top_k > 0) keep = std::min<size_t>(keep, static_cast<size_t>(options_.top_k));
  std::vector<double> p(keep);
  double max = logits[ids[0]], sum = 0.0;
  for (size_t i = 0; i < keep; ++i)
    sum += p[i] = std::exp((logits[ids[i]] - max) / options_.temperature);
  if (options_.top_p < 1.0) {  // smallest prefix whose mass reaches top_p
    double mass = 0.0;
    for (size_t i = 0; i < keep; ++i)
      if ((mass += p[i] / sum) >= options_.top_p) {
        keep = i + 1;
        break;
      }
    sum = std::accumulate(p.begin(), p.begin() + keep, 0.0);
  }
  double r = uniform() * sum;
  for (size_t i = 0; i < keep; ++i)
    if ((r -= p[i]) < 0.0) return ids[i];
  return ids[keep - 1];
}

}  // namespace xmesh::model
