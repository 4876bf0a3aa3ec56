// Which thread ran a task: for the tests of who does a transport's I/O in its I/O thread's stead.
#pragma once

#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>

namespace xmesh::transport {

/// The calling thread's name.
inline std::string thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

/// The name of the thread that runs the task `hand` is given, `hand` being called 50 ms after
/// its start (the I/O thread asleep by then) by a thread named "caller" whose nice value is
/// `lower` above its creator's (threads start at their creator's, the I/O thread too). `hand`
/// returns whether it took the task. "nobody" when the task did not run within 10 s.
inline std::string ran_on(int lower, const std::function<bool(std::function<void()>)>& hand) {
  std::promise<std::string> ran;
  auto where = ran.get_future();
  std::thread caller([&] {
    pthread_setname_np(pthread_self(), "caller");
    if (lower > 0) {
      const auto self = static_cast<id_t>(gettid());
      ASSERT_EQ(setpriority(PRIO_PROCESS, self, getpriority(PRIO_PROCESS, self) + lower), 0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(hand([&] { ran.set_value(thread_name()); }));
  });
  caller.join();
  return where.wait_for(std::chrono::seconds(10)) == std::future_status::ready ? where.get()
                                                                               : "nobody";
}

}  // namespace xmesh::transport
