#include "kernels/expert_ffn.hpp"

#include <algorithm>

#include "kernels/ops.hpp"

namespace xmesh::kernels {

namespace {

constexpr int64_t rows_per_item = 16;

int64_t blocks(int64_t rows) { return (rows + rows_per_item - 1) / rows_per_item; }

// Runs `fn(job, row_begin, row_end)` over all row blocks of all jobs, `rows_of(job)` rows each.
template <class RowsOf, class Fn>
void for_row_blocks(std::span<const expert_job> jobs, thread_pool& pool, RowsOf rows_of, Fn fn) {
  std::vector<int64_t> first_item(jobs.size() + 1, 0);
  for (size_t j = 0; j < jobs.size(); ++j) first_item[j + 1] = first_item[j] + blocks(rows_of(j));
  pool.parallel_for(first_item.back(), [&](int64_t begin, int64_t end) {
    size_t j =
        std::upper_bound(first_item.begin(), first_item.end(), begin) - first_item.begin() - 1;
    for (int64_t item = begin; item < end; ++item) {
      while (item >= first_item[j + 1]) ++j;
      int64_t row = (item - first_item[j]) * rows_per_item;
      fn(j, row, std::min(row + rows_per_item, rows_of(j)));
    }
  });
}

}  // namespace

void run_experts(std::span<const expert_job> jobs, thread_pool& pool) {
  // Per job: [tokens, 2 * intermediate] of gate outputs then up outputs, reused for the product.
  std::vector<std::vector<float>> gate_up(jobs.size());
  for (size_t j = 0; j < jobs.size(); ++j)
    gate_up[j].resize(jobs[j].num_tokens * 2 * jobs[j].weights->intermediate());

  // Phase 1: gate and up projections, as one matrix of 2 * intermediate rows.
  for_row_blocks(
      jobs, pool, [&](size_t j) { return 2 * jobs[j].weights->intermediate(); },
      [&](size_t j, int64_t r0, int64_t r1) {
        const auto& job = jobs[j];
        int64_t inter = job.weights->intermediate();
        float* out = gate_up[j].data();
        if (r0 < inter) {
          matmul_rows(job.x, job.num_tokens, job.weights->hidden(), job.weights->gate, r0,
                      std::min(r1, inter), out, 2 * inter);
        }
        if (r1 > inter) {
          int64_t u0 = std::max(r0, inter) - inter;
          matmul_rows(job.x, job.num_tokens, job.weights->hidden(), job.weights->up, u0, r1 - inter,
                      out + inter, 2 * inter);
        }
      });
  for (size_t j = 0; j < jobs.size(); ++j) {
    int64_t inter = jobs[j].weights->intermediate();
    float* g = gate_up[j].data();
    for (int64_t t = 0; t < jobs[j].num_tokens; ++t)
      swiglu(g + t * 2 * inter, g + t * 2 * inter + inter, inter, g + t * 2 * inter);
  }
  // Phase 2: down projection of the activation (stored in the gate half of each row).
  for_row_blocks(
      jobs, pool, [&](size_t j) { return jobs[j].weights->hidden(); },
      [&](size_t j, int64_t r0, int64_t r1) {
        const auto& job = jobs[j];
        int64_t inter = job.weights->intermediate();
        matmul_rows(gate_up[j].data(), job.num_tokens, 2 * inter, job.weights->down, r0, r1, job.y,
                    job.weights->hidden());
      });
}

}  // namespace xmesh::kernels
