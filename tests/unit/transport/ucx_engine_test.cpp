// The UCX engine's progress thread, and the threads that post UCX operations in its stead.
#include "transport/ucx/ucx_engine.hpp"

#include <gtest/gtest.h>
#include <pthread.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "tests/support/thread_probe.hpp"

namespace xmesh::transport::ucx {
namespace {

// While the progress thread sleeps, a thread that posts runs the task itself (no wake-up), also
// one below the progress thread's priority (an expert node's compute thread sending a reply):
// the progress thread is SCHED_BATCH (enter_io_thread), so a reply handed to it waited for a core.
TEST(UcxEngine, ThreadsOfAnyPriorityPostInItsSteadWhileItSleeps) {
  auto engine = std::make_shared<ucx_engine>();
  engine->listen("ucx://127.0.0.1:0", [](bytes, std::shared_ptr<reply_handle>) {});  // a worker
  auto post = [&](std::function<void()> task) { return engine->post(std::move(task)); };
  EXPECT_EQ(ran_on(0, post), "caller");
  EXPECT_EQ(ran_on(5, post), "caller");
  engine->stop();
}

// What an arrival triggers (here a request handler) runs with the worker released: a thread that
// posts meanwhile (a session woken by a reply, sending its next frames) runs its task itself
// instead of queueing it until the progress thread is done.
TEST(UcxEngine, HandlersRunWithTheWorkerFreeForOtherThreadsToPost) {
  auto server = std::make_shared<ucx_engine>();
  std::promise<std::string> ran;  // the name of the thread that ran the posted task
  auto where = ran.get_future();
  std::promise<void> answered;
  server->listen("ucx://127.0.0.1:0", [&](bytes, std::shared_ptr<reply_handle> reply) {
    std::thread poster([&] {
      pthread_setname_np(pthread_self(), "poster");
      ASSERT_TRUE(server->post([&] { ran.set_value(thread_name()); }));
    });
    poster.join();  // while the handler runs
    reply->send({});
  });
  auto client = std::make_shared<ucx_engine>();
  auto channel = client->open_channel(server->listen_address(), 5000);
  client->send_request(channel, bytes(8), [&](bytes, std::string) { answered.set_value(); });
  ASSERT_EQ(where.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(where.get(), "poster");
  ASSERT_EQ(answered.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  client->stop();
  server->stop();
}

}  // namespace
}  // namespace xmesh::transport::ucx
