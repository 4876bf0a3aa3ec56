#include "model/generator.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace xmesh::model {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void validate(const model_config& c, const std::vector<int32_t>& prompt,
              const generation_options& o) {
  if (prompt.empty()) throw std::runtime_error("empty prompt");
  if (o.max_new_tokens < 0) throw std::runtime_error("--max-new-tokens must be >= 0");
  for (int32_t id : prompt)
    if (id < 0 || id >= c.vocab)
      throw std::runtime_error("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                               std::to_string(c.vocab) + ")");
  auto needed = static_cast<int64_t>(prompt.size()) + std::max<int64_t>(o.max_new_tokens - 1, 0);
  if (needed > c.max_positions)
    throw std::runtime_error("prompt of " + std::to_string(prompt.size()) + " tokens plus " +
                             std::to_string(o.max_new_tokens) +
                             " new tokens exceeds the context of " +
                             std::to_string(c.max_positions) + " positions");
}

}  // namespace

generation_result generate(transformer& model, const std::vector<int32_t>& prompt,
                           const generation_options& o) {
  const auto& c = model.config();
  validate(c, prompt, o);
  auto capacity = static_cast<int64_t>(prompt.size()) + std::max<int64_t>(o.max_new_tokens - 1, 0);
  kv_cache cache(c, capacity);
  sampler pick(o.sampling);
  generation_result r;
  std::vector<float> logits;
  auto which = o.keep_all_logits ? logits_for::all : logits_for::last;

  auto start = std::chrono::steady_clock::now();
  const auto began = start;
  model.forward(prompt, cache, which, logits);
  r.prefill_seconds = seconds_since(start);
  auto keep = [&] {
    if (o.keep_all_logits) r.logits.insert(r.logits.end(), logits.begin(), logits.end());
  };
  keep();
  start = std::chrono::steady_clock::now();
  while (static_cast<int64_t>(r.generated.size()) < o.max_new_tokens) {
    std::span<const float> last(logits.data() + logits.size() - c.vocab, c.vocab);
    int32_t token = pick.next(last);
    r.generated.push_back(token);
    r.token_seconds.push_back(seconds_since(began));
    bool eos =
        std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), token) != c.eos_token_ids.end();
    if ((o.stop_at_eos && eos) || static_cast<int64_t>(r.generated.size()) == o.max_new_tokens)
      break;
    int32_t feed[1] = {token};
    model.forward(feed, cache, which, logits);
    keep();
    ++r.decode_steps;
  }
  r.decode_seconds = seconds_since(start);
  r.positions = cache.length();
  return r;
}

}  // namespace xmesh::model
