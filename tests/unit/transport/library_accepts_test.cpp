// The caps on connections that libraries accept (transport/gate/library_accepts): a plain
// listener accepting through accept4(2), and libzmq's router socket, which calls it itself.
// Loopback has a whole /8, so clients bound to 127.0.0.2 are a second host.
#include "transport/gate/library_accepts.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/loopback.hpp"
#include "transport/factory.hpp"
#include "transport/gate/listener.hpp"

namespace xmesh::transport {
namespace {

using namespace std::chrono_literals;
using testing_support::connect_loopback;

// True when the server end was closed: reading gives end of file or a reset within `within`.
bool closed_by_server(int fd, std::chrono::milliseconds within) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(within.count())) <= 0) return false;
  char c;
  return ::recv(fd, &c, 1, 0) <= 0;
}

// Every connection waiting on `listener` that the caps admit.
std::vector<int> accept_all(int listener) {
  std::vector<int> admitted;
  for (int c; (c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;)
    admitted.push_back(c);
  EXPECT_EQ(errno, EAGAIN);
  return admitted;
}

class LibraryAccepts : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = library_accept_caps_now();
    listener_ = listen_tcp("127.0.0.1", 0);
    ::fcntl(listener_, F_SETFL, O_NONBLOCK);
    port_ = bound_port(listener_);
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
    ::close(listener_);
    set_library_accept_caps(saved_);
  }
  int client(const char* host) { return fds_.emplace_back(connect_loopback(port_, host)); }
  std::vector<int> accepted() {
    std::this_thread::sleep_for(50ms);  // the handshakes complete in the kernel
    auto a = accept_all(listener_);
    fds_.insert(fds_.end(), a.begin(), a.end());
    return a;
  }

  library_accept_caps saved_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::vector<int> fds_;
};

TEST_F(LibraryAccepts, AHostGetsItsShareAndTheRestAreClosedAtOnce) {
  set_library_accept_caps({3, 100});
  const auto before = library_accept_counts_now();
  std::vector<int> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(client("127.0.0.1"));
  const int other = client("127.0.0.2");
  EXPECT_EQ(accepted().size(), 4u);  // three from the first host, one from the second
  const auto after = library_accept_counts_now();
  EXPECT_EQ(after.admitted - before.admitted, 4u);
  EXPECT_EQ(after.refused_per_host - before.refused_per_host, 2u);
  EXPECT_TRUE(closed_by_server(clients[3], 2s));
  EXPECT_TRUE(closed_by_server(clients[4], 2s));
  EXPECT_FALSE(closed_by_server(clients[0], 100ms));
  EXPECT_FALSE(closed_by_server(other, 100ms));
}

TEST_F(LibraryAccepts, AClosedConnectionGivesItsPlaceBack) {
  set_library_accept_caps({2, 100});
  client("127.0.0.1");
  client("127.0.0.1");
  auto first = accepted();
  ASSERT_EQ(first.size(), 2u);
  client("127.0.0.1");
  EXPECT_TRUE(accepted().empty());
  ::close(first[0]);
  // The fd number is reused at once by the next accept: the socket behind it is what counts.
  client("127.0.0.1");
  EXPECT_EQ(accepted().size(), 1u);
  client("127.0.0.1");
  EXPECT_TRUE(accepted().empty());
}

TEST_F(LibraryAccepts, TheTotalCapHoldsAcrossHosts) {
  set_library_accept_caps({3, 4});
  const auto before = library_accept_counts_now();
  for (int i = 0; i < 3; ++i) client("127.0.0.1");
  for (int i = 0; i < 3; ++i) client("127.0.0.2");
  EXPECT_EQ(accepted().size(), 4u);
  const auto after = library_accept_counts_now();
  EXPECT_EQ(after.refused_total - before.refused_total, 2u);
  EXPECT_GE(after.live, 4u);
}

TEST_F(LibraryAccepts, TheGateAcceptsUncapped) {
  set_library_accept_caps({1, 1});
  for (int i = 0; i < 3; ++i) client("127.0.0.1");
  std::this_thread::sleep_for(50ms);
  int taken = 0;
  for (int c; (c = accept_uncapped(listener_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++taken)
    fds_.push_back(c);
  EXPECT_EQ(taken, 3);
}

// libzmq accepts on its own I/O thread through the process's accept4: a host holding its share
// of the router's connections gets no more, and the connections it holds stay.
TEST_F(LibraryAccepts, ZeroMqsRouterIsCapped) {
  set_library_accept_caps({4, 100});
  auto server = make_endpoint("zmq");
  server->listen("tcp://127.0.0.1:0", [](bytes, std::shared_ptr<reply_handle>) {});
  const std::string address = server->listen_address();
  const auto zmq_port = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  const auto before = library_accept_counts_now();
  std::vector<int> clients;
  for (int i = 0; i < 10; ++i)
    clients.push_back(fds_.emplace_back(connect_loopback(zmq_port, "127.0.0.1")));
  int closed = 0;
  for (int fd : clients) closed += closed_by_server(fd, 500ms) ? 1 : 0;
  const auto after = library_accept_counts_now();
  EXPECT_EQ(after.admitted - before.admitted, 4u);
  EXPECT_EQ(after.refused_per_host - before.refused_per_host, 6u);
  EXPECT_EQ(closed, 6);
}

}  // namespace
}  // namespace xmesh::transport
