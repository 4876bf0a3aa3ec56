#include "kernels/shared_experts.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/core/thread_pool.hpp"

namespace xmesh::kernels {
namespace {

// Experts of different sizes (blocks that do not divide evenly), applied to 1 and 3 tokens.
struct expert_set {
  static constexpr int64_t hidden = 72;
  std::vector<std::vector<float>> storage;
  std::vector<expert_weights> weights;
  std::vector<float> x;

  explicit expert_set(int count) {
    weights.reserve(count);
    storage.reserve(3 * size_t(count));  // the weights point into it
    for (int e = 0; e < count; ++e) {
      const int64_t inter = 40 + 24 * e;
      auto& g = storage.emplace_back(inter * hidden);
      auto& u = storage.emplace_back(inter * hidden);
      auto& d = storage.emplace_back(hidden * inter);
      for (size_t i = 0; i < g.size(); ++i) {
        g[i] = float(std::sin(0.1 * double(i) + e));
        u[i] = float(std::cos(0.07 * double(i) - e));
        d[i] = float(std::sin(0.05 * double(i) + 1 + e));
      }
      weights.push_back({{g.data(), weight_format::f32, inter, hidden},
                         {u.data(), weight_format::f32, inter, hidden},
                         {d.data(), weight_format::f32, hidden, inter}});
    }
    x.resize(3 * hidden);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::cos(0.3 * double(i)));
  }

  // Job e reads tokens (1 or 3 of them) and writes its own rows of y, which starts as NaN.
  std::vector<expert_job> jobs(std::vector<float>& y) const {
    auto tokens = [](size_t e) { return int64_t(e % 2 == 0 ? 1 : 3); };
    int64_t rows = 0;
    for (size_t e = 0; e < weights.size(); ++e) rows += tokens(e);
    y.assign(rows * hidden, std::nanf(""));
    std::vector<expert_job> out;
    int64_t row = 0;
    for (size_t e = 0; e < weights.size(); ++e) {
      out.push_back({&weights[e], x.data(), tokens(e), y.data() + row * hidden});
      row += tokens(e);
    }
    return out;
  }
};

std::vector<float> reference(const expert_set& s) {
  std::vector<float> y;
  auto jobs = s.jobs(y);
  thread_pool pool(2);
  run_experts(jobs, pool);
  return y;
}

// Helpers arriving together and one by one compute the same bits as run_experts, and exactly one
// of them is told it finished the last block.
TEST(SharedExpertJobs, AnyNumberOfHelpersGiveRunExpertsBits) {
  const expert_set s(5);
  const auto want = reference(s);
  for (int helpers : {1, 2, 4}) {
    std::vector<float> y;
    auto jobs = s.jobs(y);
    shared_expert_jobs shared(jobs);
    std::atomic<int> finishers{0}, answers{0};
    std::vector<std::thread> threads;
    for (int h = 0; h < helpers; ++h)
      threads.emplace_back([&, h] {
        std::this_thread::sleep_for(std::chrono::microseconds(50 * h));  // some arrive late
        const bool last = shared.help([&] {
          // The finisher answers once every result is complete (and before waking the others).
          EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)), 0);
          ++answers;
        });
        if (last) {
          ++finishers;
          EXPECT_EQ(answers.load(), 1);  // answered before its help() returned
        }
        EXPECT_TRUE(shared.done());  // help() returns only once every job is done
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(finishers.load(), 1) << helpers << " helpers";
    EXPECT_EQ(answers.load(), 1) << helpers << " helpers";
    ASSERT_EQ(y.size(), want.size());
    EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)), 0)
        << helpers << " helpers";
  }
}

// An answer that throws reaches the finisher's caller, and the helpers waiting for the last block
// still return (a node fails that frame and keeps its compute threads). The answer takes its time
// first, so that the others are asleep by then, as they would be, never woken, without the fix.
TEST(SharedExpertJobs, AThrowingAnswerStillReleasesTheOthers) {
  std::atomic<bool> joined{false};
  std::thread watchdog([&] {  // waiters never woken would hang a join: fail at once instead
    for (int i = 0; i < 3000 && !joined; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!joined) {
      std::fprintf(stderr, "FAIL: helpers still waiting 30 s after an answer threw\n");
      std::_Exit(1);
    }
  });
  const expert_set s(3);
  for (int round = 0; round < 10; ++round) {
    std::vector<float> y;
    auto jobs = s.jobs(y);
    shared_expert_jobs shared(jobs);
    std::atomic<int> thrown{0}, returned{0};
    std::vector<std::thread> threads;
    for (int h = 0; h < 3; ++h)
      threads.emplace_back([&] {
        try {
          shared.help([] {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            throw std::runtime_error("reply failed");
          });
          ++returned;
        } catch (const std::runtime_error&) {
          ++thrown;
        }
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(thrown.load(), 1);
    EXPECT_EQ(returned.load(), 2);
    EXPECT_TRUE(shared.done());
  }
  joined = true;
  watchdog.join();
}

// A helper that comes after the work is done finds nothing, returns at once and is not the
// finisher.
TEST(SharedExpertJobs, LateHelperFindsItDone) {
  const expert_set s(2);
  std::vector<float> y;
  auto jobs = s.jobs(y);
  shared_expert_jobs shared(jobs);
  EXPECT_FALSE(shared.done());
  EXPECT_TRUE(shared.help());
  EXPECT_TRUE(shared.done());
  EXPECT_FALSE(shared.help());
  EXPECT_EQ(std::memcmp(y.data(), reference(s).data(), y.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace xmesh::kernels
