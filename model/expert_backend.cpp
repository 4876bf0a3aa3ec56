#include "model/expert_backend.hpp"

#include <algorithm>
#include <vector>

#include "model/expert_store.hpp"

namespace xmesh::model {

namespace {
struct done_batch final : expert_batch {
  void wait() override {}
};
}  // namespace

std::string_view to_string(expert_errc e) {
  switch (e) {
    case expert_errc::ok:
      return "ok";
    case expert_errc::node_unreachable:
      return "node_unreachable";
    case expert_errc::bad_frame:
      return "bad_frame";
    case expert_errc::expert_failed:
      return "expert_failed";
    case expert_errc::deadline_passed:
      return "deadline_passed";
    case expert_errc::not_hosted:
      return "not_hosted";
  }
  return "unknown";
}

void compute_expert_slots(std::span<const int32_t> slots, const float* x, const int32_t* expert_ids,
                          int32_t k, int64_t hidden, const expert_weights_of& weights_of,
                          kernels::thread_pool& pool, float* y) {
  // Slots grouped by expert, ascending (the order changes no output: batch-invariant kernels).
  std::vector<std::pair<int32_t, int32_t>> order;  // (expert, slot)
  order.reserve(slots.size());
  for (int32_t s : slots) order.emplace_back(expert_ids[s], s);
  std::sort(order.begin(), order.end());
  const auto n = static_cast<int64_t>(order.size());
  std::vector<float> xs(n * hidden), ys(n * hidden);
  std::vector<kernels::expert_job> jobs;
  int64_t first = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(x + (order[i].second / k) * hidden, hidden, xs.data() + i * hidden);
    if (i + 1 == n || order[i + 1].first != order[i].first) {
      jobs.push_back({weights_of(order[i].first), xs.data() + first * hidden, i + 1 - first,
                      ys.data() + first * hidden});
      first = i + 1;
    }
  }
  kernels::run_experts(jobs, pool);
  for (int64_t i = 0; i < n; ++i)
    std::copy_n(ys.data() + i * hidden, hidden, y + static_cast<int64_t>(order[i].second) * hidden);
}

std::unique_ptr<expert_batch> local_expert_backend::submit(int64_t layer, const float* x,
                                                           int64_t num_tokens,
                                                           const int32_t* expert_ids, int32_t k,
                                                           float* y, const uint8_t*) {
  const auto& experts = weights_.layers[layer].experts;
  if (store_ != nullptr) {  // token by token: a token's experts must be resident together
    std::vector<int32_t> slots, ids;
    for (int64_t t = 0; t < num_tokens; ++t) {
      slots.clear(), ids.clear();
      for (int32_t s = static_cast<int32_t>(t * k); s < (t + 1) * k; ++s)
        if (expert_ids[s] >= 0) slots.push_back(s), ids.push_back(expert_ids[s]);
      store_->touch(layer, ids.data(), static_cast<int64_t>(ids.size()));
      compute_expert_slots(
          slots, x, expert_ids, k, experts.front().hidden(),
          [&](int32_t e) { return store_->weights(layer, e); }, pool_, y);
    }
    return std::make_unique<done_batch>();
  }
  std::vector<int32_t> slots;  // a slot a routing policy skipped (id -1) computes nothing
  for (int32_t s = 0; s < static_cast<int32_t>(num_tokens * k); ++s)
    if (expert_ids[s] >= 0) slots.push_back(s);
  compute_expert_slots(
      slots, x, expert_ids, k, experts.front().hidden(), [&](int32_t e) { return &experts[e]; },
      pool_, y);
  return std::make_unique<done_batch>();
}

}  // namespace xmesh::model
