#include "kernels/expert_ffn.hpp"

#include <algorithm>

#include "kernels/ops.hpp"

namespace xmesh::kernels {

namespace {

// Runs `fn(job, row_begin, row_end)` over all row blocks of all jobs, `rows_of(job)` rows each.
template <class RowsOf, class Fn>
void for_row_blocks(std::span<const expert_job> jobs, thread_pool& pool, RowsOf rows_of, Fn fn) {
  std::vector<int64_t> first_item(jobs.size() + 1, 0);
  for (size_t j = 0; j < jobs.size(); ++j)
    first_item[j + 1] = first_item[j] + expert_blocks(rows_of(j));
  pool.parallel_for(first_item.back(), [&](int64_t begin, int64_t end) {
    size_t j =
        std::upper_bound(first_item.begin(), first_item.end(), begin) - first_item.begin() - 1;
    for (int64_t item = begin; item < end; ++item) {
      while (item >= first_item[j + 1]) ++j;
      int64_t row = (item - first_item[j]) * expert_block_rows;
      fn(j, row, std::min(row + expert_block_rows, rows_of(j)));
    }
  });
}

}  // namespace

int64_t gate_up_floats(const expert_job& job) {
  return job.num_tokens * 2 * job.weights->intermediate();
}

void gate_up_rows(const expert_job& job, float* gate_up, int64_t r0, int64_t r1) {
  const int64_t inter = job.weights->intermediate();
  if (r0 < inter)
    matmul_rows(job.x, job.num_tokens, job.weights->hidden(), job.weights->gate, r0,
                std::min(r1, inter), gate_up, 2 * inter);
  if (r1 > inter)
    matmul_rows(job.x, job.num_tokens, job.weights->hidden(), job.weights->up,
                std::max(r0, inter) - inter, r1 - inter, gate_up + inter, 2 * inter);
}

void activate(const expert_job& job, float* gate_up) {
  const int64_t inter = job.weights->intermediate();
  for (int64_t t = 0; t < job.num_tokens; ++t) {
    float* g = gate_up + t * 2 * inter;
    swiglu(g, g + inter, inter, g);
  }
}

void down_rows(const expert_job& job, const float* gate_up, int64_t r0, int64_t r1) {
  const int64_t inter = job.weights->intermediate();
  matmul_rows(gate_up, job.num_tokens, 2 * inter, job.weights->down, r0, r1, job.y,
              job.weights->hidden());
}

void run_experts(std::span<const expert_job> jobs, thread_pool& pool) {
  // Per job: [tokens, 2 * intermediate] of gate outputs then up outputs, reused for the product.
  std::vector<std::vector<float>> gate_up(jobs.size());
  for (size_t j = 0; j < jobs.size(); ++j) gate_up[j].resize(gate_up_floats(jobs[j]));
  for_row_blocks(
      jobs, pool, [&](size_t j) { return 2 * jobs[j].weights->intermediate(); },
      [&](size_t j, int64_t r0, int64_t r1) { gate_up_rows(jobs[j], gate_up[j].data(), r0, r1); });
  for (size_t j = 0; j < jobs.size(); ++j) activate(jobs[j], gate_up[j].data());
  for_row_blocks(
      jobs, pool, [&](size_t j) { return jobs[j].weights->hidden(); },
      [&](size_t j, int64_t r0, int64_t r1) { down_rows(jobs[j], gate_up[j].data(), r0, r1); });
}

}  // namespace xmesh::kernels
