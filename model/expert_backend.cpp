#include "model/expert_backend.hpp"

#include <algorithm>
#include <vector>

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

std::unique_ptr<expert_batch> local_expert_backend::submit(int64_t layer, const float* x,
                                                           int64_t num_tokens,
                                                           const int32_t* expert_ids, int32_t k,
                                                           float* y) {
  const auto& experts = weights_.layers[layer].experts;
  int64_t hidden = experts.front().hidden();
  // Group (token, slot) pairs by expert, in ascending expert order.
  std::vector<std::vector<int64_t>> slots_of(experts.size());
  for (int64_t s = 0; s < num_tokens * k; ++s) slots_of[expert_ids[s]].push_back(s);

  std::vector<int64_t> first_row(experts.size() + 1, 0);
  for (size_t e = 0; e < experts.size(); ++e) first_row[e + 1] = first_row[e] + slots_of[e].size();
  std::vector<float> xs(first_row.back() * hidden), ys(first_row.back() * hidden);
  std::vector<kernels::expert_job> jobs;
  for (size_t e = 0; e < experts.size(); ++e) {
    if (slots_of[e].empty()) continue;
    for (size_t i = 0; i < slots_of[e].size(); ++i) {
      const float* src = x + (slots_of[e][i] / k) * hidden;
      std::copy(src, src + hidden, xs.begin() + (first_row[e] + i) * hidden);
    }
    jobs.push_back({&experts[e], xs.data() + first_row[e] * hidden,
                    static_cast<int64_t>(slots_of[e].size()), ys.data() + first_row[e] * hidden});
  }
  kernels::run_experts(jobs, pool_);
  for (size_t e = 0; e < experts.size(); ++e)
    for (size_t i = 0; i < slots_of[e].size(); ++i) {
      const float* src = ys.data() + (first_row[e] + i) * hidden;
      std::copy(src, src + hidden, y + slots_of[e][i] * hidden);
    }
  return std::make_unique<done_batch>();
}

}  // namespace xmesh::model
