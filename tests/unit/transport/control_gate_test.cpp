// The control gate on loopback, without CAF: a gate in front of an echo server, reached through
// another gate's dialled TLS connection or by a stranger's raw socket.
#include "transport/gate/control_gate.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "tests/support/loopback.hpp"

namespace xmesh::transport {
namespace {

namespace fs = std::filesystem;
using testing_support::connect_loopback;
using namespace std::chrono_literals;

// A control-plane message: the 32-byte header with its big-endian payload length at byte 4.
std::vector<uint8_t> message(uint32_t payload, uint8_t fill = 7) {
  std::vector<uint8_t> m(32 + (payload < (1u << 20) ? payload : 0), fill);
  for (int i = 0; i < 4; ++i) m[4 + i] = static_cast<uint8_t>(payload >> (24 - 8 * i));
  return m;
}

// Reads until `n` bytes came or the peer closed (or 5 s passed); returns what came.
std::vector<uint8_t> read_some(int fd, size_t n) {
  std::vector<uint8_t> got;
  uint8_t buf[4096];
  while (got.size() < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r <= 0) break;
    got.insert(got.end(), buf, buf + r);
  }
  return got;
}

// True when the peer closes within `within` (what it sent before is read and dropped).
bool closed_by_peer(int fd, std::chrono::milliseconds within) {
  const auto until = std::chrono::steady_clock::now() + within;
  uint8_t buf[4096];
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    if (::recv(fd, buf, sizeof buf, 0) <= 0) return true;
  }
  return false;
}

// What lies behind the gate: echoes every admitted connection's bytes; counts connections and
// the bytes that reached it.
struct echo_server {
  std::atomic<int> connections{0};
  std::atomic<size_t> bytes{0};

  std::function<void(int)> admit() {
    return [this](int fd) {
      ++connections;
      std::thread([this, fd] {
        uint8_t buf[4096];
        for (ssize_t r; (r = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
          bytes += static_cast<size_t>(r);
          (void)::send(fd, buf, static_cast<size_t>(r), MSG_NOSIGNAL);
        }
        ::close(fd);
      }).detach();
    };
  }
};

// The caller's end of a connection `gate` dials to the loopback port.
int dial(control_gate& gate, uint16_t port, const std::string& peer) {
  int pair[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  gate.dial(pair[1], "127.0.0.1", port, peer);
  return pair[0];
}

template <class F>
bool eventually(F f) {
  for (int i = 0; i < 100 && !f(); ++i) std::this_thread::sleep_for(50ms);
  return f();
}

class ControlGate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("xmesh-gate-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir / "ours");
    fs::create_directories(dir / "theirs");
    write_tls_identities(dir / "ours", {"head", "experts"});
    write_tls_identities(dir / "theirs", {"experts"});
  }
  void TearDown() override { fs::remove_all(dir); }

  tls_identity ours(const std::string& name) { return tls_identity_in(dir / "ours", name); }

  fs::path dir;
  uint16_t port = 0;
  echo_server inner;
};

TEST(MessageGuard, FollowsHeadersAcrossSplitsAndRefusesOversizedAnnouncements) {
  message_guard g(100);
  auto a = message(10), b = message(0), c = message(100);
  std::vector<uint8_t> stream;
  for (const auto* m : {&a, &b, &c}) stream.insert(stream.end(), m->begin(), m->end());
  for (size_t i = 0; i < stream.size(); i += 7)  // in 7-byte pieces: headers split anywhere
    ASSERT_TRUE(g.feed(stream.data() + i, std::min<size_t>(7, stream.size() - i)));
  EXPECT_EQ(g.messages(), 3u);
  auto big = message(101);
  EXPECT_FALSE(g.feed(big.data(), 32));
  EXPECT_EQ(g.announced(), 101u);
}

// A registration's claim: the CA's certificate and its key's signature name the signer; the
// text changed, another member's signature, or another cluster's certificate are refused.
TEST_F(ControlGate, ASignedClaimNamesItsSignerAndNothingElse) {
  const auto ca = dir / "ours" / "tls-ca.pem";
  auto claim = sign_claim(ours("experts"), "xmesh-register\nexperts");
  EXPECT_EQ(verify_claim(ca, claim, "xmesh-register\nexperts"), "experts");
  auto refused = [&](const signed_claim& c, const std::string& text) {
    try {
      (void)verify_claim(ca, c, text);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(refused(claim, "xmesh-register\nhead"), "its signature does not match its certificate");
  auto mixed = claim;
  mixed.signature = sign_claim(ours("head"), "xmesh-register\nexperts").signature;
  EXPECT_EQ(refused(mixed, "xmesh-register\nexperts"),
            "its signature does not match its certificate");
  auto foreign = sign_claim(tls_identity_in(dir / "theirs", "experts"), "xmesh-register\nexperts");
  EXPECT_NE(refused(foreign, "xmesh-register\nexperts").find("not one of this cluster's"),
            std::string::npos);
  EXPECT_EQ(refused({"junk", claim.signature}, "x"), "its certificate is not a PEM certificate");
}

TEST_F(ControlGate, ATunnelOfTheClusterReachesTheActorSystemBehindTheGate) {
  control_gate server("head", ours("head"));
  port = server.listen("127.0.0.1", 0, inner.admit());
  control_gate client("experts", ours("experts"));
  int fd = dial(client, port, "head");
  auto m = message(3000, 42);
  ASSERT_EQ(::send(fd, m.data(), m.size(), 0), static_cast<ssize_t>(m.size()));
  EXPECT_EQ(read_some(fd, m.size()), m);  // through TLS to the echo server and back
  EXPECT_TRUE(eventually([&] { return server.counters().admitted == 1; }));
  EXPECT_EQ(client.last_error("127.0.0.1", port), "");
  ::close(fd);
}

// Something a thread frees as it ends, slowly (as OpenSSL frees a thread's state).
struct slow_to_free {
  ~slow_to_free() { std::this_thread::sleep_for(100ms); }
};

// No connection thread outlives its gate, not even its exit: one still ending while the process
// exited had OpenSSL's state for it freed twice. The admitting callback runs on the gate's
// connection threads, which then take 100 ms to end.
TEST_F(ControlGate, NoThreadOutlivesItsGate) {
  auto threads = [] {
    return std::distance(fs::directory_iterator("/proc/self/task"), fs::directory_iterator{});
  };
  const auto before = threads();
  std::mutex mu;
  std::vector<int> behind;  // the connections' loopback ends, held open past the gate
  std::vector<int> peers;
  {
    control_gate gate("head", std::nullopt);
    port = gate.listen("127.0.0.1", 0, [&](int fd) {
      thread_local slow_to_free freed_at_exit;
      [[maybe_unused]] auto* used = &freed_at_exit;
      std::lock_guard lock(mu);
      behind.push_back(fd);
    });
    const auto m = message(10);
    for (int i = 0; i < 4; ++i) {  // a connection is admitted once its first message passed
      peers.push_back(connect_loopback(port));
      ASSERT_EQ(::send(peers.back(), m.data(), m.size(), 0), static_cast<ssize_t>(m.size()));
    }
    ASSERT_TRUE(eventually([&] { return gate.counters().admitted == 4; }));
    EXPECT_EQ(threads(), before + 5);  // the listener and a thread per connection
  }
  EXPECT_EQ(threads(), before);
  for (int fd : behind) ::close(fd);
  for (int fd : peers) ::close(fd);
}

TEST_F(ControlGate, AForeignCertificateNeverReachesTheActorSystemAndTheErrorNamesWhy) {
  control_gate server("head", ours("head"));
  port = server.listen("127.0.0.1", 0, inner.admit());
  control_gate stranger("experts", tls_identity_in(dir / "theirs", "experts"));
  int fd = dial(stranger, port, "head");
  EXPECT_TRUE(closed_by_peer(fd, 5s));
  ::close(fd);
  EXPECT_NE(stranger.last_error("127.0.0.1", port).find("not one of this cluster's"),
            std::string::npos)
      << stranger.last_error("127.0.0.1", port);
  EXPECT_TRUE(eventually([&] { return server.counters().refused_handshake == 1; }));
  EXPECT_EQ(inner.connections, 0);
}

TEST_F(ControlGate, ATunnelRefusesAPeerWhoseCertificateNamesAnotherNode) {
  control_gate server("head", ours("head"));
  port = server.listen("127.0.0.1", 0, inner.admit());
  control_gate client("experts", ours("experts"));
  int fd = dial(client, port, "coordinator");
  EXPECT_TRUE(closed_by_peer(fd, 5s));
  ::close(fd);
  EXPECT_EQ(client.last_error("127.0.0.1", port),
            "its certificate names 'head', not 'coordinator'");
}

TEST_F(ControlGate, AnOversizedAnnouncementDropsThePeerBeforeAnythingIsPassedOn) {
  gate_limits limits;
  limits.max_message_bytes = 4096;
  control_gate server("head", ours("head"), limits);
  port = server.listen("127.0.0.1", 0, inner.admit());
  control_gate client("experts", ours("experts"));
  int fd = dial(client, port, "head");
  auto ok = message(100), big = message(256u << 20);
  ASSERT_EQ(::send(fd, ok.data(), ok.size(), 0), static_cast<ssize_t>(ok.size()));
  EXPECT_EQ(read_some(fd, ok.size()), ok);
  ASSERT_EQ(::send(fd, big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  EXPECT_TRUE(closed_by_peer(fd, 5s));
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return server.counters().refused_oversized == 1; }));
  EXPECT_EQ(inner.bytes, ok.size());  // the oversized header itself never went on
}

TEST_F(ControlGate, APeerThatNeverCompletesAHandshakeIsDroppedAtTheDeadline) {
  gate_limits limits;
  limits.handshake_deadline = 300ms;
  for (bool tls : {true, false}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    control_gate server("head", tls ? std::optional(ours("head")) : std::nullopt, limits);
    const uint16_t p = server.listen("127.0.0.1", 0, inner.admit());
    int silent = connect_loopback(p);
    int half = connect_loopback(p);
    auto part = message(10);
    ASSERT_EQ(::send(half, part.data(), 20, 0), 20);  // half a header
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(closed_by_peer(silent, 3s));
    EXPECT_TRUE(closed_by_peer(half, 3s));
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
    EXPECT_TRUE(eventually([&] { return server.counters().refused_handshake == 2; }));
    ::close(silent);
    ::close(half);
  }
}

TEST_F(ControlGate, WithoutTlsItStillCapsAnnouncementsAndPassesWholeMessages) {
  gate_limits limits;
  limits.max_message_bytes = 4096;
  control_gate server("head", std::nullopt, limits);
  EXPECT_FALSE(server.authenticated());
  port = server.listen("127.0.0.1", 0, inner.admit());
  int fd = connect_loopback(port);
  auto ok = message(1000);
  ASSERT_EQ(::send(fd, ok.data(), ok.size(), 0), static_cast<ssize_t>(ok.size()));
  EXPECT_EQ(read_some(fd, ok.size()), ok);
  auto big = message(1u << 28);
  ASSERT_EQ(::send(fd, big.data(), 32, 0), 32);
  EXPECT_TRUE(closed_by_peer(fd, 5s));
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return server.counters().refused_oversized == 1; }));
  EXPECT_EQ(inner.bytes, ok.size());  // the oversized header never went on
}

TEST_F(ControlGate, ADialledPeerIsCappedToo) {
  // A "peer" that answers a dial with a header announcing 256 MiB: the dialling gate hangs up.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::listen(listener, 4);
  socklen_t len = sizeof a;
  getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  std::thread rogue([listener] {
    int c = ::accept(listener, nullptr, nullptr);
    auto big = message(256u << 20);
    (void)::send(c, big.data(), 32, MSG_NOSIGNAL);
    uint8_t b;
    (void)::recv(c, &b, 1, 0);  // until the gate hangs up
    ::close(c);
  });
  control_gate client("experts", std::nullopt);
  int fd = dial(client, ntohs(a.sin_port), "");
  EXPECT_TRUE(closed_by_peer(fd, 5s));
  EXPECT_TRUE(eventually([&] { return client.counters().refused_oversized == 1; }));
  ::close(fd);
  rogue.join();
  ::close(listener);
}

TEST_F(ControlGate, ConnectionsWaitingForAHandshakeAreCappedPerHost) {
  gate_limits limits;
  limits.max_pending_per_host = 4;
  control_gate server("head", ours("head"), limits);
  port = server.listen("127.0.0.1", 0, inner.admit());
  std::vector<int> held;
  for (int i = 0; i < 12; ++i) held.push_back(connect_loopback(port));
  EXPECT_TRUE(eventually([&] { return server.counters().refused_capacity == 8; }));
  // A member still gets in once the strangers are gone (the waiting ones, silent, gave their
  // slots back within a second).
  for (int fd : held) ::close(fd);
  EXPECT_TRUE(eventually([&] { return server.counters().refused_handshake == 4; }));
  control_gate client("experts", ours("experts"));
  int fd = dial(client, port, "head");
  auto m = message(8);
  ASSERT_EQ(::send(fd, m.data(), m.size(), 0), static_cast<ssize_t>(m.size()));
  EXPECT_EQ(read_some(fd, m.size()), m);
  ::close(fd);
}

TEST_F(ControlGate, RandomBytesNeverGetPastTheHandshake) {
  control_gate server("head", ours("head"));
  port = server.listen("127.0.0.1", 0, inner.admit());
  std::mt19937 rng(7);
  for (int i = 0; i < 50; ++i) {
    std::vector<uint8_t> junk(1 + rng() % 2048);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    if (i % 5 == 0) junk.assign(17, 0xff);
    int fd = connect_loopback(port);
    (void)::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    if (i % 2 == 0) {  // gone at once (reset): the gate's answer meets a dead socket
      linger hard{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    } else {
      EXPECT_TRUE(closed_by_peer(fd, 5s));
    }
    ::close(fd);
  }
  EXPECT_TRUE(eventually([&] { return server.counters().refused_handshake == 50; }));
  EXPECT_EQ(inner.connections, 0);
}

TEST_F(ControlGate, KeygenKeepsWhatExistsAndAddsNewNames) {
  auto before = tls_identity_in(dir / "ours", "head");
  auto ca = fs::last_write_time(before.ca);
  EXPECT_EQ(write_tls_identities(dir / "ours", {"head", "experts", "edge-1"}),
            std::vector<std::string>{"edge-1"});
  EXPECT_EQ(fs::last_write_time(before.ca), ca);
  EXPECT_EQ(fs::status(tls_identity_in(dir / "ours", "edge-1").key).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  try {
    tls_identity_in(dir / "ours", "nobody");
    FAIL() << "no identity for a name keygen never saw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tls-nobody.pem: missing"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace xmesh::transport
