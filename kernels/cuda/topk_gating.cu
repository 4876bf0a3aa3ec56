// Top-k gating on the device: one thread per token (expert counts are small: <= 256).
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_kernels.hpp"

namespace xmesh::kernels::cuda {

namespace {

constexpr int max_experts = 512;

__global__ void topk_kernel(const float* logits, int64_t num_tokens, int64_t num_experts, int32_t k,
                            bool renormalize, int32_t* ids, float* weights) {
  int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= num_tokens) return;
  const float* row = logits + t * num_experts;
  float max = row[0];
  for (int64_t e = 1; e < num_experts; ++e) max = fmaxf(max, row[e]);
  double sum = 0.0;
  for (int64_t e = 0; e < num_experts; ++e) sum += expf(row[e] - max);
  bool taken[max_experts] = {};
  float total = 0.0f;
  for (int32_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < num_experts; ++e)
      if (!taken[e] && (best < 0 || row[e] > row[best])) best = e;
    taken[best] = true;
    float p = expf(row[best] - max) * static_cast<float>(1.0 / sum);
    ids[t * k + j] = static_cast<int32_t>(best);
    weights[t * k + j] = p;
    total += p;
  }
  if (renormalize)
    for (int32_t j = 0; j < k; ++j) weights[t * k + j] /= total;
}

}  // namespace

status topk_gating(const float* logits, int64_t num_tokens, int64_t num_experts, int32_t k,
                   bool renormalize, int32_t* expert_ids, float* weights) {
  if (num_experts > max_experts || k > num_experts)
    return status::error("topk_gating: at most 512 experts and k <= experts");
  device_array<float> dl, dw;
  device_array<int32_t> di;
  XMESH_CUDA_TRY(dl.allocate(num_tokens * num_experts));
  XMESH_CUDA_TRY(dw.allocate(num_tokens * k));
  XMESH_CUDA_TRY(di.allocate(num_tokens * k));
  XMESH_CUDA_TRY(
      cudaMemcpy(dl.ptr, logits, num_tokens * num_experts * sizeof(float), cudaMemcpyHostToDevice));
  topk_kernel<<<static_cast<unsigned>((num_tokens + 127) / 128), 128>>>(
      dl.ptr, num_tokens, num_experts, k, renormalize, di.ptr, dw.ptr);
  XMESH_CUDA_TRY(cudaGetLastError());
  XMESH_CUDA_TRY(
      cudaMemcpy(expert_ids, di.ptr, num_tokens * k * sizeof(int32_t), cudaMemcpyDeviceToHost));
  XMESH_CUDA_TRY(
      cudaMemcpy(weights, dw.ptr, num_tokens * k * sizeof(float), cudaMemcpyDeviceToHost));
  return {};
}

}  // namespace xmesh::kernels::cuda
