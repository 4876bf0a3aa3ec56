// CUDA kernels against the CPU reference; skips cleanly without a device (ctest label gpu).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cuda/cuda_kernels.hpp"
#include "kernels/topk_gating.hpp"

namespace xmesh::kernels {
namespace {

#define REQUIRE_DEVICE()                                                          \
  do {                                                                            \
    std::string why;                                                              \
    if (cuda::device_count(&why) == 0) GTEST_SKIP() << "no CUDA device: " << why; \
  } while (0)

TEST(CudaParity, ExpertFfnMatchesCpu) {
  REQUIRE_DEVICE();
  const int64_t hidden = 256, inter = 128, tokens = 5;
  std::vector<uint16_t> g(inter * hidden), u(inter * hidden), d(hidden * inter);
  for (size_t i = 0; i < g.size(); ++i) {
    g[i] = f32_to_bf16(0.06f * std::sin(0.1f * i));
    u[i] = f32_to_bf16(0.06f * std::cos(0.07f * i));
    d[i] = f32_to_bf16(0.09f * std::sin(0.05f * i + 1));
  }
  std::vector<float> x(tokens * hidden);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.3f * i);
  expert_weights w{{g.data(), dtype::bf16, inter, hidden},
                   {u.data(), dtype::bf16, inter, hidden},
                   {d.data(), dtype::bf16, hidden, inter}};
  std::vector<float> cpu(tokens * hidden), gpu(tokens * hidden);
  thread_pool pool(1);
  expert_job job{&w, x.data(), tokens, cpu.data()};
  run_experts({&job, 1}, pool);
  auto s = cuda::expert_ffn(x.data(), tokens, w, gpu.data());
  ASSERT_TRUE(s.ok()) << s.message();
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_NEAR(gpu[i], cpu[i], 1e-4 + 1e-4 * std::fabs(cpu[i]));
}

TEST(CudaParity, TopkGatingMatchesCpu) {
  REQUIRE_DEVICE();
  const int64_t tokens = 33, experts = 64;
  const int32_t k = 8;
  std::vector<float> logits(tokens * experts);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = 2.0f * std::sin(1.7f * i + 0.3f * (i % 7));
  for (bool renorm : {false, true}) {
    std::vector<int32_t> cpu_ids(tokens * k), gpu_ids(tokens * k);
    std::vector<float> cpu_w(tokens * k), gpu_w(tokens * k);
    topk_gating(logits.data(), tokens, experts, k, renorm, cpu_ids.data(), cpu_w.data());
    auto s =
        cuda::topk_gating(logits.data(), tokens, experts, k, renorm, gpu_ids.data(), gpu_w.data());
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(cpu_ids, gpu_ids);
    for (size_t i = 0; i < cpu_w.size(); ++i) EXPECT_NEAR(gpu_w[i], cpu_w[i], 1e-6);
  }
}

}  // namespace
}  // namespace xmesh::kernels
