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

nll_result sequence_nll(transformer& net, std::span<const int32_t> ids, int64_t context,
                        int64_t stride, const std::function<void(const score_window&)>& on_window) {
  if (context < 1 || stride < 1 || stride > context)
    throw std::invalid_argument("perplexity: need 1 <= stride <= context");
  const int64_t vocab = net.config().vocab;
  nll_result r;
  std::vector<float> logits;
  for (const auto& w : score_windows(static_cast<int64_t>(ids.size()), context, stride)) {
    if (on_window) on_window(w);
    kv_cache cache(net.config(), w.end - 1 - w.start);
    net.forward(ids.subspan(w.start, w.end - 1 - w.start), cache, logits_for::all, logits);
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
