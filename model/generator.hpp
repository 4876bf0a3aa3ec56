// The generation loop: prefill the prompt as one batch, then decode token by token.
#pragma once

#include <cstdint>
#include <vector>

#include "model/sampler.hpp"
#include "model/transformer.hpp"

namespace xmesh::model {

struct generation_options {
  int64_t max_new_tokens = 16;
  sampling_options sampling;
  bool keep_all_logits = false;  // logits of every processed position, prompt first
  bool stop_at_eos = true;
};

struct generation_result {
  std::vector<int32_t> generated;
  std::vector<float> logits;  // [positions, vocab] when keep_all_logits
  int64_t positions = 0;      // tokens processed (prompt + generated tokens fed back)
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t decode_steps = 0;
  std::vector<double> token_seconds;  // when each generated token was picked, from the start
};

/// Runs `prompt` then up to `max_new_tokens` steps; errors (bad ids, context) throw before any
/// work.
generation_result generate(transformer& model, const std::vector<int32_t>& prompt,
                           const generation_options& options);

}  // namespace xmesh::model
