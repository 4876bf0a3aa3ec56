// The ZeroMQ engine's I/O thread, and the threads that send on its sockets in its stead.
#include "transport/zmq/zmq_engine.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <memory>

#include "tests/support/thread_probe.hpp"

namespace xmesh::transport::zeromq {
namespace {

// While the I/O thread sleeps in poll(), a thread that sends runs the send itself (no wake-up),
// also one below the I/O thread's priority (an expert node's compute thread sending a reply):
// the I/O thread is SCHED_BATCH (enter_io_thread), so a reply handed to it waited for a core.
TEST(ZmqEngine, ThreadsOfAnyPrioritySendInItsSteadWhileItSleeps) {
  auto engine = std::make_shared<zmq_engine>();
  engine->start();
  engine->listen("tcp://127.0.0.1:0", [](bytes, std::shared_ptr<reply_handle>) {});  // a socket
  auto send = [&](std::function<void()> task) {
    return engine->send_on([task = std::move(task)]() -> zmq::socket_t* {
      task();
      return nullptr;  // no socket used
    });
  };
  EXPECT_EQ(ran_on(0, send), "caller");
  EXPECT_EQ(ran_on(5, send), "caller");
  engine->stop();
}

}  // namespace
}  // namespace xmesh::transport::zeromq
