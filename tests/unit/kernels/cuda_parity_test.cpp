// CUDA kernels against the CPU reference; skips cleanly without a device (ctest label gpu).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cuda/cuda_kernels.hpp"
#include "kernels/quant.hpp"
#include "kernels/topk_gating.hpp"

namespace xmesh::kernels {
namespace {

#define REQUIRE_DEVICE()                                                          \
  do {                                                                            \
    std::string why;                                                              \
    if (cuda::device_count(&why) == 0) GTEST_SKIP() << "no CUDA device: " << why; \
  } while (0)

// One expert's three matrices in `format`, from smooth f32 values (quantized via quant.hpp).
struct expert_matrices {
  std::vector<uint8_t> bytes[3], scales[3];
  expert_weights w;
  expert_matrices(weight_format format, int64_t hidden, int64_t inter) {
    matrix_view* views[3] = {&w.gate, &w.up, &w.down};
    for (int m = 0; m < 3; ++m) {
      int64_t rows = m == 2 ? hidden : inter, cols = m == 2 ? inter : hidden;
      std::vector<float> v(rows * cols);
      for (size_t i = 0; i < v.size(); ++i) v[i] = 0.06f * std::sin(0.1f * i + m);
      *views[m] = {nullptr, format, rows, cols};
      bytes[m].resize(views[m]->data_bytes());
      scales[m].resize(views[m]->scale_bytes());
      auto* s16 = reinterpret_cast<uint16_t*>(scales[m].data());
      if (format == weight_format::bf16)
        for (size_t i = 0; i < v.size(); ++i)
          reinterpret_cast<uint16_t*>(bytes[m].data())[i] = f32_to_bf16(v[i]);
      if (format == weight_format::q8)
        quant::quantize_q8(v.data(), rows, cols, reinterpret_cast<int8_t*>(bytes[m].data()), s16);
      if (format == weight_format::q4)
        quant::quantize_q4(v.data(), rows, cols, bytes[m].data(), s16);
      if (format == weight_format::fp8)
        quant::quantize_fp8(v.data(), rows, cols, bytes[m].data(),
                            reinterpret_cast<float*>(scales[m].data()));
      views[m]->data = bytes[m].data();
      views[m]->scales = scales[m].empty() ? nullptr : scales[m].data();
    }
  }
};

TEST(CudaParity, ExpertFfnMatchesCpu) {
  REQUIRE_DEVICE();
  const int64_t hidden = 256, inter = 128, tokens = 5;
  std::vector<float> x(tokens * hidden);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.3f * i);
  for (auto format :
       {weight_format::bf16, weight_format::q8, weight_format::q4, weight_format::fp8}) {
    expert_matrices m(format, hidden, inter);
    std::vector<float> cpu(tokens * hidden), gpu(tokens * hidden);
    thread_pool pool(1);
    expert_job job{&m.w, x.data(), tokens, cpu.data()};
    run_experts({&job, 1}, pool);
    auto s = cuda::expert_ffn(x.data(), tokens, m.w, gpu.data());
    ASSERT_TRUE(s.ok()) << s.message();
    for (size_t i = 0; i < cpu.size(); ++i)
      ASSERT_NEAR(gpu[i], cpu[i], 1e-4 + 1e-4 * std::fabs(cpu[i])) << format_name(format);
  }
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
