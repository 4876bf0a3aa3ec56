// Perplexity of a long token sequence: strided windows so every target is scored once with at
// least context - stride tokens before it (what the training script in tools/train computes).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/transformer.hpp"

namespace xmesh::model {

/// One window: inputs ids[start, end - 1) predict the targets ids[first, end).
struct score_window {
  int64_t start = 0, first = 0, end = 0;
};

/// Windows over `n` tokens: the first scores targets 1..context, each next one `stride` more
/// targets with the `context` tokens before its last target as input.
std::vector<score_window> score_windows(int64_t n, int64_t context, int64_t stride);

/// -ln p summed over ids[1:] (ids[0] is context only), in double from f32 logits.
struct nll_result {
  double nll = 0;
  int64_t tokens = 0;
};

/// Logits of one window's inputs, [inputs, vocab]: from a local engine or through a cluster.
using window_logits = std::function<std::vector<float>(std::span<const int32_t> inputs)>;

/// A local engine's window logits (a fresh KV cache per window).
window_logits local_window_logits(transformer& net);

/// Scores `ids` window by window; `on_window` runs before each window's logits are asked for
/// (routing statistics use it to know which rows are scored).
nll_result sequence_nll(const window_logits& logits, int64_t vocab, std::span<const int32_t> ids,
                        int64_t context, int64_t stride,
                        const std::function<void(const score_window&)>& on_window = {});

}  // namespace xmesh::model
