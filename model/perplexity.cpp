#include "model/perplexity.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace xmesh::model {

std::vector<score_window> score_windows(int64_t n, int64_t context, int64_t stride) {
  std::vector<score_window> out;
  for (int64_t pos = 1; pos < n;) {
    int64_t end = std::min(n, pos == 1 ? context + 1 : pos + stride);
    out.push_back({std::max<int64_t>(0, end - 1 - context), pos, end});
    pos = end;
  }
  return out;
}

window_logits local_window_logits(transformer& net) {
  return [&net](std::span<const int32_t> inputs) {
    kv_cache cache(net.config(), static_cast<int64_t>(inputs.size()));
    std::vector<float> logits;
    net.forward(inputs, cache, logits_for::all, logits);
    return logits;
  };
}

nll_result sequence_nll(const window_logits& logits_of, int64_t vocab, std::span<const int32_t> ids,
                        int64_t context, int64_t stride,
                        const std::function<void(const score_window&)>& on_window) {
  if (context < 1 || stride < 1 || stride > context)
    throw std::invalid_argument("perplexity: need 1 <= stride <= context");
  nll_result r;
  for (const auto& w : score_windows(static_cast<int64_t>(ids.size()), context, stride)) {
    if (on_window) on_window(w);
    auto logits = logits_of(ids.subspan(w.start, w.end - 1 - w.start));
    if (static_cast<int64_t>(logits.size()) != (w.end - 1 - w.start) * vocab)
      throw std::runtime_error("perplexity: a window's logits have the wrong size");
    for (int64_t t = w.first; t < w.end; ++t) {
      const float* row = logits.data() + (t - 1 - w.start) * vocab;
      double top = *std::max_element(row, row + vocab), sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - top);
      r.nll += top + std::log(sum) - row[ids[t]];
      ++r.tokens;
    }
  }
  return r;
}

}  // namespace xmesh::model
