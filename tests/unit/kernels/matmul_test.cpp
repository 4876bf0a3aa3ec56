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

namespace xmesh::kernels {
namespace {

struct matmul_case {
  dtype type;
  int64_t rows, cols, tokens;
};

std::string case_name(const testing::TestParamInfo<matmul_case>& info) {
  const auto& c = info.param;
  return std::string(dtype_name(c.type)) + "_r" + std::to_string(c.rows) + "_c" +
         std::to_string(c.cols) + "_t" + std::to_string(c.tokens);
}

struct random_matrix {
  std::vector<uint8_t> bytes;
  matrix_view view;
  random_matrix(dtype type, int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    bytes.resize(rows * cols * dtype_size(type));
    for (int64_t i = 0; i < rows * cols; ++i) {
      float v = dist(gen);
      if (type == dtype::f32) {
        std::memcpy(bytes.data() + i * 4, &v, 4);
      } else {
        uint16_t h = type == dtype::bf16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(bytes.data() + i * 2, &h, 2);
      }
    }
    view = {bytes.data(), type, rows, cols};
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
  to_f32(w.row(r), w.type, w.cols, row.data());
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
  random_matrix w(c.type, c.rows, c.cols, 1);
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
  random_matrix w(c.type, c.rows, c.cols, 3);
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
  random_matrix w(c.type, c.rows, c.cols, 5);
  auto x = random_vector(c.tokens * c.cols, 6);
  std::vector<float> batched(c.tokens * c.rows), alone(c.tokens * c.rows);
  thread_pool two(2), three(3);
  matmul(x.data(), c.tokens, c.cols, w.view, batched.data(), c.rows, two);
  for (int64_t t = 0; t < c.tokens; ++t)
    matmul(x.data() + t * c.cols, 1, c.cols, w.view, alone.data() + t * c.rows, c.rows, three);
  EXPECT_EQ(0, std::memcmp(batched.data(), alone.data(), batched.size() * sizeof(float)));
}

std::vector<matmul_case> matmul_cases() {
  std::vector<matmul_case> out;
  for (auto type : {dtype::f32, dtype::bf16, dtype::f16})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 64}, {37, 100}, {130, 1024}, {8, 7}})
      for (int64_t tokens : {1, 5, 13}) out.push_back({type, rows, cols, tokens});
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
