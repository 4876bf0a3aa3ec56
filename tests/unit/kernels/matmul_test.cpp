// The matmul contract: both instruction sets agree bit for bit, and a token's output does not
// depend on the batch it shares or the thread count (DESIGN.md, correctness invariant).
#include "kernels/matmul.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/quant.hpp"

namespace xmesh::kernels {
namespace {

struct matmul_case {
  weight_format format;
  int64_t rows, cols, tokens;
};

std::string case_name(const testing::TestParamInfo<matmul_case>& info) {
  const auto& c = info.param;
  return std::string(format_name(c.format)) + "_r" + std::to_string(c.rows) + "_c" +
         std::to_string(c.cols) + "_t" + std::to_string(c.tokens);
}

// A matrix of normal random weights in `format` (quantized ones through kernels/quant.hpp).
struct random_matrix {
  std::vector<uint8_t> bytes, scales;
  matrix_view view;
  random_matrix(weight_format format, int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> w(rows * cols);
    for (auto& v : w) v = dist(gen);
    view = {nullptr, format, rows, cols};
    bytes.resize(view.data_bytes());
    scales.resize(view.scale_bytes());
    auto* s16 = reinterpret_cast<uint16_t*>(scales.data());
    for (int64_t i = 0; i < rows * cols; ++i) {
      if (format == weight_format::f32) std::memcpy(bytes.data() + i * 4, &w[i], 4);
      uint16_t h = format == weight_format::bf16 ? f32_to_bf16(w[i]) : f32_to_f16(w[i]);
      if (format == weight_format::bf16 || format == weight_format::f16)
        std::memcpy(bytes.data() + i * 2, &h, 2);
    }
    if (format == weight_format::q8)
      quant::quantize_q8(w.data(), rows, cols, reinterpret_cast<int8_t*>(bytes.data()), s16);
    if (format == weight_format::q4) quant::quantize_q4(w.data(), rows, cols, bytes.data(), s16);
    if (format == weight_format::fp8)
      quant::quantize_fp8(w.data(), rows, cols, bytes.data(),
                          reinterpret_cast<float*>(scales.data()));
    view.data = bytes.data();
    view.scales = scales.empty() ? nullptr : scales.data();
  }
};

std::vector<float> random_vector(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// Straightforward double-precision product, for accuracy (not bit) checks.
double reference_dot(const matrix_view& w, int64_t r, const float* x) {
  std::vector<float> row(w.cols);
  row_to_f32(w, r, row.data());
  double acc = 0;
  for (int64_t k = 0; k < w.cols; ++k) acc += static_cast<double>(row[k]) * x[k];
  return acc;
}

class Matmul : public testing::TestWithParam<matmul_case> {
 protected:
  void TearDown() override { force_matmul_isa(""); }
};

TEST_P(Matmul, MatchesDoublePrecisionReference) {
  auto c = GetParam();
  random_matrix w(c.format, c.rows, c.cols, 1);
  auto x = random_vector(c.tokens * c.cols, 2);
  std::vector<float> y(c.tokens * c.rows);
  thread_pool pool(2);
  matmul(x.data(), c.tokens, c.cols, w.view, y.data(), c.rows, pool);
  for (int64_t t = 0; t < c.tokens; ++t)
    for (int64_t r = 0; r < c.rows; ++r)
      ASSERT_NEAR(y[t * c.rows + r], reference_dot(w.view, r, x.data() + t * c.cols),
                  1e-5 * std::sqrt(static_cast<double>(c.cols)) * 4)
          << "token " << t << " row " << r;
}

TEST_P(Matmul, EveryIsaAgreesWithGenericBitForBit) {
  auto c = GetParam();
  random_matrix w(c.format, c.rows, c.cols, 3);
  auto x = random_vector(c.tokens * c.cols, 4);
  std::vector<float> generic(c.tokens * c.rows), fast(c.tokens * c.rows);
  thread_pool pool(1);
  force_matmul_isa("generic");
  matmul(x.data(), c.tokens, c.cols, w.view, generic.data(), c.rows, pool);
  for (const auto& isa : matmul_isas()) {
    force_matmul_isa(isa);
    std::fill(fast.begin(), fast.end(), -1.0f);
    matmul(x.data(), c.tokens, c.cols, w.view, fast.data(), c.rows, pool);
    EXPECT_EQ(0, std::memcmp(fast.data(), generic.data(), fast.size() * sizeof(float))) << isa;
  }
}

TEST_P(Matmul, TokenResultIndependentOfBatchAndThreads) {
  auto c = GetParam();
  random_matrix w(c.format, c.rows, c.cols, 5);
  auto x = random_vector(c.tokens * c.cols, 6);
  std::vector<float> batched(c.tokens * c.rows), alone(c.tokens * c.rows);
  thread_pool two(2), three(3);
  matmul(x.data(), c.tokens, c.cols, w.view, batched.data(), c.rows, two);
  for (int64_t t = 0; t < c.tokens; ++t)
    matmul(x.data() + t * c.cols, 1, c.cols, w.view, alone.data() + t * c.rows, c.rows, three);
  EXPECT_EQ(0, std::memcmp(batched.data(), alone.data(), batched.size() * sizeof(float)));
}

TEST_P(Matmul, EqualsTheF32ProductOfItsDecodedWeightsBitForBit) {
  // The precision policy: quantized weights are decoded to f32 exactly as row_to_f32 gives them
  // and multiplied in the canonical order, so a quantized model is its dequantized f32 model.
  auto c = GetParam();
  random_matrix w(c.format, c.rows, c.cols, 7);
  std::vector<float> decoded(c.rows * c.cols);
  for (int64_t r = 0; r < c.rows; ++r) row_to_f32(w.view, r, decoded.data() + r * c.cols);
  matrix_view f32_view{decoded.data(), weight_format::f32, c.rows, c.cols};
  auto x = random_vector(c.tokens * c.cols, 8);
  std::vector<float> direct(c.tokens * c.rows), via_f32(c.tokens * c.rows);
  thread_pool pool(2);
  for (const auto& isa : matmul_isas()) {
    force_matmul_isa(isa);
    matmul(x.data(), c.tokens, c.cols, w.view, direct.data(), c.rows, pool);
    matmul(x.data(), c.tokens, c.cols, f32_view, via_f32.data(), c.rows, pool);
    EXPECT_EQ(0, std::memcmp(direct.data(), via_f32.data(), direct.size() * sizeof(float))) << isa;
  }
}

std::vector<matmul_case> matmul_cases() {
  std::vector<matmul_case> out;
  for (auto format : {weight_format::f32, weight_format::bf16, weight_format::f16})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 64}, {37, 100}, {130, 1024}, {8, 7}})
      for (int64_t tokens : {1, 5, 13}) out.push_back({format, rows, cols, tokens});
  // Quantized rows come in whole groups of 32 (fp8: whole 128 x 128 blocks).
  for (auto format : {weight_format::q8, weight_format::q4})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 64}, {37, 96}, {130, 1024}, {3, 32}})
      for (int64_t tokens : {1, 5, 13}) out.push_back({format, rows, cols, tokens});
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{128, 128}, {256, 384}})
    for (int64_t tokens : {1, 5, 13}) out.push_back({weight_format::fp8, rows, cols, tokens});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Matmul, testing::ValuesIn(matmul_cases()), case_name);

TEST(Dot, CanonicalOrderSameOnEveryIsa) {
  for (int64_t n : {77, 16, 5, 1024}) {
    auto a = random_vector(n, 8), b = random_vector(n, 9);
    force_matmul_isa("generic");
    const float generic = dot(a.data(), b.data(), n);
    for (const auto& isa : matmul_isas()) {
      force_matmul_isa(isa);
      EXPECT_EQ(generic, dot(a.data(), b.data(), n)) << isa << " n=" << n;
    }
  }
  force_matmul_isa("");
}

TEST(MatmulIsa, ListsBestFirstAndRejectsUnknown) {
  auto isas = matmul_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), "generic");
  EXPECT_EQ(isas.front(), matmul_isa());
  EXPECT_THROW(force_matmul_isa("sve"), std::invalid_argument);
  EXPECT_EQ(isas.front(), matmul_isa());
}

}  // namespace
}  // namespace xmesh::kernels
