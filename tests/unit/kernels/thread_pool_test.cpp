#include "kernels/core/thread_pool.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace xmesh::kernels {
namespace {

TEST(ThreadPool, CoversEveryIndexOnce) {
  thread_pool pool(3);
  for (int64_t n : {1, 2, 7, 1000}) {
    std::vector<int> hits(n);
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    EXPECT_EQ(std::accumulate(hits.begin(), hits.end(), 0), n);
    EXPECT_EQ(*std::min_element(hits.begin(), hits.end()), 1);
  }
}

// Workers asleep (idle past their spin) must take every job, woken by the job itself, and also
// while another thread's prewakes and rests race the jobs. Each job's three chunks wait for one
// another, so only all three threads running at once can finish it: a worker that sleeps through a
// job fails it (after a 10 s wait) instead of leaving its chunk to the caller.
TEST(ThreadPool, SleepingWorkersWakeForEveryJobAndPrewakesAndRestsStrandNone) {
  thread_pool pool(3);
  for (bool racing : {false, true}) {
    std::atomic<bool> done{false};
    std::thread waker([&] {
      while (racing && !done) {
        pool.prewake();
        std::this_thread::sleep_for(std::chrono::microseconds(30));
        pool.rest();
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    });
    for (int job = 0; job < 200; ++job) {
      if (job % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));  // they sleep
      std::vector<int> hits(63);
      std::atomic<int> started{0};
      std::atomic<bool> all_met{true};
      pool.parallel_for(63, [&](int64_t b, int64_t e) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (++started; started < 3 && all_met;)
          if (std::chrono::steady_clock::now() > until)
            all_met = false;
          else
            std::this_thread::yield();
        for (int64_t i = b; i < e; ++i) ++hits[i];
      });
      ASSERT_TRUE(all_met) << "job " << job << ": a worker slept through it";
      ASSERT_EQ(std::count(hits.begin(), hits.end(), 1), 63) << "job " << job;
    }
    done = true;
    waker.join();
  }
}

// Holds a thread that gets SIGUSR1 in the handler until `released`.
std::atomic<bool> released{false};
std::atomic<int> held{0};
void hold(int) {
  ++held;
  while (!released) {
    timespec ms{0, 1000000};
    nanosleep(&ms, nullptr);
  }
}

// The threads of this process named `name`, by Linux thread id.
std::vector<pid_t> threads_named(const std::string& name) {
  std::vector<pid_t> out;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(t.path() / "comm");
    std::string c;
    if (std::getline(comm, c) && c == name) out.push_back(std::stoi(t.path().filename()));
  }
  return out;
}

// A worker the scheduler keeps off its core (here: held in a signal handler) must not hold up a
// job: the caller runs its chunks. With chunks fixed per thread, the job would wait for it.
TEST(ThreadPool, TheCallerRunsTheChunksOfWorkersThatCannotRun) {
  ASSERT_TRUE(threads_named("xmesh.pool").empty()) << "another test's pool is still alive";
  struct sigaction sa {
  }, before{};
  sa.sa_handler = hold;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &before), 0);
  released = false;
  held = 0;
  {
    thread_pool pool(3);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers named and asleep
    const auto workers = threads_named("xmesh.pool");
    ASSERT_EQ(workers.size(), 2u);
    for (pid_t tid : workers) ASSERT_EQ(syscall(SYS_tgkill, getpid(), tid, SIGUSR1), 0);
    while (held < 2) std::this_thread::yield();
    auto job = std::async(std::launch::async, [&] {
      std::vector<int> hits(90);
      std::set<std::thread::id> ran_on;
      std::mutex m;
      pool.parallel_for(90, [&](int64_t b, int64_t e) {
        std::lock_guard lock(m);
        ran_on.insert(std::this_thread::get_id());
        for (int64_t i = b; i < e; ++i) ++hits[i];
      });
      return std::pair{std::count(hits.begin(), hits.end(), 1), ran_on.size()};
    });
    const bool finished = job.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    released = true;  // lets a job that waits for them finish, so the pool can go
    EXPECT_TRUE(finished) << "the job waited for workers that could not run";
    const auto [covered, threads] = job.get();
    EXPECT_EQ(covered, 90);
    EXPECT_EQ(threads, 1u) << "only the caller could run";
  }
  sigaction(SIGUSR1, &before, nullptr);
}

}  // namespace
}  // namespace xmesh::kernels
