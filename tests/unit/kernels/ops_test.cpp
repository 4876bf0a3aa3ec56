#include "kernels/ops.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/core/dtype.hpp"
#include "kernels/expert_ffn.hpp"
#include "kernels/topk_gating.hpp"

namespace xmesh::kernels {
namespace {

TEST(Dtype, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  // 1 + 2^-8 is exactly half way between two bf16 values: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
}

TEST(Dtype, F16RoundTripsEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (((h >> 10) & 0x1F) == 0x1F) continue;  // inf / nan
    float f = f16_to_f32(static_cast<uint16_t>(h));
    ASSERT_EQ(f32_to_f16(f), h == 0x8000 ? 0x8000 : h) << "half bits " << h;
  }
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
}

TEST(TopkGating, PicksLargestAndRenormalises) {
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.0f, 2.0f};
  std::vector<int32_t> ids(2);
  std::vector<float> w(2);
  topk_gating(logits.data(), 1, 5, 2, false, ids.data(), w.data());
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);  // tie between experts 3 and 4: the lower id wins
  double z = 0;
  for (float l : logits) z += std::exp(l);
  EXPECT_NEAR(w[0], std::exp(3.0) / z, 1e-6);
  topk_gating(logits.data(), 1, 5, 2, true, ids.data(), w.data());
  EXPECT_NEAR(w[0] + w[1], 1.0f, 1e-6);
  EXPECT_NEAR(w[0] / w[1], std::exp(1.0), 1e-5);
}

TEST(RmsNorm, MatchesDefinition) {
  std::vector<float> x = {1, -2, 3, -4}, w = {1, 0.5f, 2, 1}, out(4);
  rms_norm(x.data(), w.data(), dtype::f32, 4, 1e-6f, out.data());
  double rms = std::sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], w[i] * x[i] / rms, 1e-6);
}

TEST(Rope, RotatesPairsHalfApart) {
  std::vector<float> x = {1, 0, 0, 0};  // head_dim 4: pairs (0, 2) and (1, 3)
  rope(x.data(), 1, 4, 3, 10000.0);
  EXPECT_NEAR(x[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(x[2], std::sin(3.0), 1e-6);
  EXPECT_EQ(x[1], 0.0f);
}

TEST(ExpertFfn, MatchesScalarSwiGlu) {
  const int64_t hidden = 24, inter = 40, tokens = 3;
  std::vector<float> g(inter * hidden), u(inter * hidden), d(hidden * inter), x(tokens * hidden);
  for (size_t i = 0; i < g.size(); ++i) g[i] = std::sin(0.1 * i), u[i] = std::cos(0.07 * i);
  for (size_t i = 0; i < d.size(); ++i) d[i] = std::sin(0.05 * i + 1);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.3 * i);
  expert_weights w{{g.data(), weight_format::f32, inter, hidden},
                   {u.data(), weight_format::f32, inter, hidden},
                   {d.data(), weight_format::f32, hidden, inter}};
  std::vector<float> y(tokens * hidden);
  thread_pool pool(2);
  expert_job job{&w, x.data(), tokens, y.data()};
  run_experts({&job, 1}, pool);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t o = 0; o < hidden; ++o) {
      double acc = 0;
      for (int64_t i = 0; i < inter; ++i) {
        double a = 0, b = 0;
        for (int64_t k = 0; k < hidden; ++k) {
          a += g[i * hidden + k] * x[t * hidden + k];
          b += u[i * hidden + k] * x[t * hidden + k];
        }
        acc += d[o * inter + i] * (a / (1 + std::exp(-a)) * b);
      }
      ASSERT_NEAR(y[t * hidden + o], acc, 1e-4);
    }
}

}  // namespace
}  // namespace xmesh::kernels
