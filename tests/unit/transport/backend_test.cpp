// Every back end, same cases: frame round trips, concurrency with out-of-order replies,
// unreachable peers and peer shutdown. Real sockets on 127.0.0.1 with ephemeral ports.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "transport/factory.hpp"
#include "transport/frame.hpp"
#include "transport/transport.hpp"

namespace xt = xmesh::transport;
using namespace std::chrono_literals;

namespace {

std::string unique_suffix() {
  static std::atomic<int> n{0};
  return std::to_string(::getpid()) + "-" + std::to_string(n++);
}

// A TCP port nothing listens on (bound once by the kernel, then released).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct backend_case {
  std::string name;     // make_endpoint name
  std::string variant;  // address flavour, for the test name
  bool sealed = false;  // every message sealed with one data key (seal.hpp)
};

const xt::data_key& test_key() {
  static const xt::data_key key = xt::make_data_key();
  return key;
}

// Readable test parameter in gtest/ctest output.
void PrintTo(const backend_case& c, std::ostream* os) {
  *os << c.name << "/" << c.variant << (c.sealed ? "/sealed" : "");
}

std::string listen_address_for(const backend_case& c) {
  if (c.name == "local") return "local://test-" + unique_suffix();
  if (c.variant == "ipc")
    return "ipc://" +
           (std::filesystem::temp_directory_path() / ("xmesh-" + unique_suffix())).string();
  if (c.name == "zmq") return "tcp://127.0.0.1:0";
  return "ucx://127.0.0.1:0";
}

std::string unreachable_address_for(const backend_case& c) {
  if (c.name == "local") return "local://nobody-" + unique_suffix();
  if (c.variant == "ipc") return "ipc:///tmp/xmesh-nobody-" + unique_suffix();
  if (c.name == "zmq") return "tcp://127.0.0.1:" + std::to_string(free_port());
  // UCX peers connect by worker address: one of a worker that is gone.
  auto gone = xt::make_endpoint(c.name);
  gone->listen("ucx://127.0.0.1:0", [](xt::bytes, std::shared_ptr<xt::reply_handle>) {});
  return gone->listen_address();
}

// What an error names for `addr` (a UCX worker address is named by its host).
std::string named(const std::string& addr) {
  return addr.rfind("ucx-worker://", 0) == 0 ? addr.substr(0, addr.find('/', 13)) : addr;
}

xt::bytes dispatch_of_size(size_t total_bytes, uint64_t batch_id) {
  const uint32_t hidden = 64;
  const size_t row_bytes = 8 + hidden * 4;
  const uint32_t rows = uint32_t((total_bytes - xt::frame_header_bytes) / row_bytes);
  xt::frame f;
  f.header.batch_id = batch_id;
  f.header.num_rows = rows;
  f.header.hidden = hidden;
  for (uint32_t r = 0; r < rows; ++r) {
    f.expert_of_pair.push_back(int32_t(r % 16));
    f.token_of_pair.push_back(int32_t(r));
    for (uint32_t h = 0; h < hidden; ++h) f.rows.push_back(float(batch_id) + float(r * hidden + h));
  }
  return xt::encode_frame(f);
}

// Echo: decode the dispatch, answer a result frame with the same rows.
xt::bytes echo_result(const xt::bytes& request) {
  auto d = xt::decode_frame(request, xt::frame_limits{});
  if (!d) return xt::encode_error_frame({}, d.reason);
  auto h = d.frame.header;
  h.kind = xt::frame_kind::result;
  return xt::encode_frame(h, d.frame.expert_of_pair, d.frame.token_of_pair, d.frame.rows);
}

struct reply_result {
  xt::bytes reply;
  std::string error;
};

// Sends and waits (bounded) for the reply.
reply_result call(xt::channel& ch, xt::bytes message, std::chrono::milliseconds limit = 10s) {
  auto p = std::make_shared<std::promise<reply_result>>();
  auto fut = p->get_future();
  ch.request(std::move(message), [p](xt::bytes r, std::string e) {
    p->set_value({std::move(r), std::move(e)});
  });
  if (fut.wait_for(limit) != std::future_status::ready) return {{}, "test timeout"};
  return fut.get();
}

class Transport : public ::testing::TestWithParam<backend_case> {
 protected:
  std::unique_ptr<xt::endpoint> make() {
    const auto& c = GetParam();
    return c.sealed ? xt::make_endpoint(c.name, test_key()) : xt::make_endpoint(c.name);
  }
  // A listening endpoint serving `handler`; returns the address to connect to.
  std::string serve(xt::endpoint& ep, xt::request_handler handler) {
    ep.listen(listen_address_for(GetParam()), std::move(handler));
    return ep.listen_address();
  }
};

TEST_P(Transport, FramesRoundTrip) {
  auto server = make();
  auto addr = serve(
      *server, [](xt::bytes m, std::shared_ptr<xt::reply_handle> r) { r->send(echo_result(m)); });
  auto client = make();
  auto ch = client->connect(addr, 5000);
  for (size_t size : {size_t{4096}, size_t{65536}, size_t{1} << 20}) {
    auto req = dispatch_of_size(size, size);
    auto res = call(*ch, req);
    ASSERT_EQ(res.error, "") << size;
    auto d = xt::decode_frame(res.reply, xt::frame_limits{});
    ASSERT_TRUE(d.ok()) << d.reason;
    EXPECT_EQ(d.frame.header.kind, xt::frame_kind::result);
    EXPECT_EQ(d.frame.header.batch_id, size);
    auto sent = xt::decode_frame(req, xt::frame_limits{});
    EXPECT_TRUE(std::equal(d.frame.rows.begin(), d.frame.rows.end(), sent.frame.rows.begin(),
                           sent.frame.rows.end()));
  }
}

// 64 requests from 4 threads; the server holds them all, then answers in shuffled order
// from another thread. Every caller must get its own reply.
TEST_P(Transport, ConcurrentRequestsOutOfOrderReplies) {
  constexpr int threads = 4, per_thread = 16, total = threads * per_thread;
  std::mutex m;
  std::vector<std::pair<xt::bytes, std::shared_ptr<xt::reply_handle>>> held;
  std::thread replier;
  auto server = make();
  auto addr = serve(*server, [&](xt::bytes msg, std::shared_ptr<xt::reply_handle> r) {
    std::lock_guard lock(m);
    held.emplace_back(std::move(msg), std::move(r));
    if (held.size() != total) return;
    replier = std::thread([&held] {
      std::shuffle(held.begin(), held.end(), std::mt19937(7));
      for (auto& [msg, r] : held) r->send(echo_result(msg));
    });
  });
  auto client = make();
  auto ch = client->connect(addr, 5000);
  std::atomic<int> ok{0};
  std::vector<std::thread> callers;
  std::vector<std::future<reply_result>> futures[threads];
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto p = std::make_shared<std::promise<reply_result>>();
        futures[t].push_back(p->get_future());
        ch->request(dispatch_of_size(4096 * (1 + i % 3), t * 1000 + i),
                    [p](xt::bytes r, std::string e) {
                      p->set_value({std::move(r), e});
                    });
      }
    });
  }
  for (auto& c : callers) c.join();
  for (int t = 0; t < threads; ++t) {
    for (int i = 0; i < per_thread; ++i) {
      auto& f = futures[t][i];
      ASSERT_EQ(f.wait_for(15s), std::future_status::ready);
      auto r = f.get();
      ASSERT_EQ(r.error, "");
      auto d = xt::decode_frame(r.reply, xt::frame_limits{});
      ASSERT_TRUE(d.ok()) << d.reason;
      EXPECT_EQ(d.frame.header.batch_id, uint64_t(t * 1000 + i));
      ok += d.frame.header.batch_id == uint64_t(t * 1000 + i);
    }
  }
  EXPECT_EQ(ok, total);
  std::lock_guard lock(m);  // the replier is created under `m` on the receive thread
  if (replier.joinable()) replier.join();
}

// Callers at the receive thread's priority send on its sockets themselves while it sleeps
// (zmq, ucx): a send may take a socket's "message in" signal that a reply for another caller
// raised, and that reply must still be delivered. 4 threads x 300 calls on one channel, each
// waiting (bounded) for its reply before the next.
TEST_P(Transport, RepliesToOthersArriveWhileCallersSendThemselves) {
  auto server = make();
  auto addr = serve(
      *server, [](xt::bytes m, std::shared_ptr<xt::reply_handle> r) { r->send(echo_result(m)); });
  auto client = make();
  auto ch = client->connect(addr, 5000);
  std::atomic<int> answered{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        auto r = call(*ch, dispatch_of_size(4096, t * 1000 + i), 5s);
        if (!r.error.empty())
          return ADD_FAILURE() << "call " << i << " of thread " << t << ": " << r.error;
        answered += xt::decode_frame(r.reply, xt::frame_limits{}).frame.header.batch_id ==
                    uint64_t(t * 1000 + i);
      }
    });
  for (auto& c : callers) c.join();
  EXPECT_EQ(answered, 1200);
}

TEST_P(Transport, UnreachablePeerGivesClearErrorWithinTimeout) {
  auto client = make();
  auto addr = unreachable_address_for(GetParam());
  auto t0 = std::chrono::steady_clock::now();
  try {
    (void)client->connect(addr, 500);
    FAIL() << "connect to " << addr << " succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot reach " + named(addr)), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

// The server takes requests and never answers, then goes away: every pending request and
// every later one completes with an error.
TEST_P(Transport, PeerShutdownFailsPendingRequests) {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::shared_ptr<xt::reply_handle>> held;
  auto server = make();
  auto addr = serve(*server, [&](xt::bytes, std::shared_ptr<xt::reply_handle> r) {
    std::lock_guard lock(m);
    held.push_back(std::move(r));
    cv.notify_all();
  });
  auto client = make();
  auto ch = client->connect(addr, 5000);
  std::vector<std::future<reply_result>> futures;
  for (int i = 0; i < 8; ++i) {
    auto p = std::make_shared<std::promise<reply_result>>();
    futures.push_back(p->get_future());
    ch->request(dispatch_of_size(4096, i), [p](xt::bytes r, std::string e) {
      p->set_value({std::move(r), std::move(e)});
    });
  }
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return held.size() == 8; }));
  }
  server.reset();
  for (auto& f : futures) {
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
    auto r = f.get();
    EXPECT_FALSE(r.error.empty());
    EXPECT_TRUE(r.reply.empty());
  }
  auto late = call(*ch, dispatch_of_size(4096, 99));
  EXPECT_FALSE(late.error.empty());
  EXPECT_NE(late.error, "test timeout");
  // Replying after the peer is gone is harmless.
  for (auto& r : held) r->send(xt::bytes(8));
}

TEST_P(Transport, ClosingChannelFailsItsPendingRequests) {
  std::vector<std::shared_ptr<xt::reply_handle>> held;
  std::mutex m;
  auto server = make();
  auto addr = serve(*server, [&](xt::bytes, std::shared_ptr<xt::reply_handle> r) {
    std::lock_guard lock(m);
    held.push_back(std::move(r));
  });
  auto client = make();
  auto ch = client->connect(addr, 5000);
  auto p = std::make_shared<std::promise<reply_result>>();
  auto fut = p->get_future();
  ch->request(dispatch_of_size(4096, 1), [p](xt::bytes r, std::string e) {
    p->set_value({std::move(r), std::move(e)});
  });
  ch.reset();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(fut.get().error.empty());
  std::lock_guard lock(m);
  for (auto& r : held) r->send(xt::bytes(8));
}

std::vector<backend_case> backends() {
  return {{"local", "inproc"},  {"zmq", "tcp"},       {"zmq", "ipc"},           {"ucx", "tcp"},
          {"zmq", "tcp", true}, {"ucx", "tcp", true}, {"local", "inproc", true}};
}

INSTANTIATE_TEST_SUITE_P(Backends, Transport, ::testing::ValuesIn(backends()),
                         [](const auto& info) {
                           return info.param.name + "_" + info.param.variant +
                                  (info.param.sealed ? "_sealed" : "");
                         });

}  // namespace

TEST(TransportFactory, RejectsUnknownBackEnd) {
  try {
    (void)xt::make_endpoint("carrier-pigeon");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("local, zmq, ucx"), std::string::npos);
  }
}

namespace {

class SealedTransport : public ::testing::TestWithParam<std::string> {};

// A sealed listener serves only messages sealed with its key, each once: a stranger's (no key,
// another cluster's key, or a sealed message changed on the way) and a captured message sent again
// never reach the handler, get no answer, and are counted by reason. Members talk both ways.
TEST_P(SealedTransport, OnlyTheClustersMessagesAreOpenedOnce) {
  const std::string backend = GetParam();
  std::atomic<int> handled{0}, forged{0}, replayed{0};
  auto server = xt::make_endpoint(backend, test_key(), [&](xt::seal_drop why) {
    ++(why == xt::seal_drop::replayed ? replayed : forged);
  });
  server->listen(backend == "zmq" ? "tcp://127.0.0.1:0" : "ucx://127.0.0.1:0",
                 [&](xt::bytes m, std::shared_ptr<xt::reply_handle> r) {
                   ++handled;
                   r->send(echo_result(m));
                 });
  const auto addr = server->listen_address();
  auto member = xt::make_endpoint(backend, test_key());
  auto ch = member->connect(addr, 5000);
  const auto frame = dispatch_of_size(4096, 7);
  auto got = call(*ch, frame);
  ASSERT_EQ(got.error, "");
  EXPECT_EQ(got.reply, echo_result(frame));  // opened: the trailer is gone
  EXPECT_EQ(handled.load(), 1);

  // Strangers reach the port (a data plane cannot refuse connections it has not read from).
  auto plain = xt::make_endpoint(backend);
  auto foreign = xt::make_endpoint(backend, xt::make_data_key());
  auto plain_ch = plain->connect(addr, 5000);
  auto foreign_ch = foreign->connect(addr, 5000);
  EXPECT_EQ(call(*plain_ch, frame, 300ms).error, "test timeout");
  EXPECT_EQ(call(*foreign_ch, frame, 300ms).error, "test timeout");
  // A member's sealed message, captured: flipped in one byte, then sent twice as it was.
  xt::sealer capture(test_key());
  auto sealed = dispatch_of_size(4096, 8);
  const auto request = capture.seal(sealed, xt::seal_direction::request);
  auto flipped = sealed;
  flipped[100] ^= std::byte{1};
  EXPECT_EQ(call(*plain_ch, flipped, 300ms).error, "test timeout");
  auto first = call(*plain_ch, sealed);
  ASSERT_EQ(first.error, "");
  EXPECT_NE(first.reply, echo_result(dispatch_of_size(4096, 8)));  // sealed: not readable as is
  auto elsewhere = first.reply;  // a reply opens only as the answer to its own request
  EXPECT_EQ(capture.open(elsewhere, xt::seal_direction::reply), xt::seal_drop::forged);
  ASSERT_FALSE(capture.open(first.reply, xt::seal_direction::reply, &request).has_value());
  EXPECT_EQ(first.reply, echo_result(dispatch_of_size(4096, 8)));
  EXPECT_EQ(call(*plain_ch, sealed, 300ms).error, "test timeout");
  EXPECT_EQ(handled.load(), 2);
  EXPECT_EQ(forged.load(), 3);
  EXPECT_EQ(replayed.load(), 1);
  // The member still talks; a reply that fails to open fails its request, naming why.
  EXPECT_EQ(call(*ch, frame).error, "");
  auto impostor = xt::make_endpoint(backend);  // answers in plain text
  impostor->listen(
      backend == "zmq" ? "tcp://127.0.0.1:0" : "ucx://127.0.0.1:0",
      [&](xt::bytes m, std::shared_ptr<xt::reply_handle> r) { r->send(std::move(m)); });
  auto fooled = member->connect(impostor->listen_address(), 5000);
  EXPECT_NE(call(*fooled, frame).error.find("failed authentication"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, SealedTransport, ::testing::Values("zmq", "ucx"));

// A listener limited to 8 KiB requests: a 64 KiB one never reaches the handler (ZeroMQ drops the
// connection that announced it, UCX the message) and is not answered; a request within the limit
// still is, on a new connection, sealed or not (the seal's trailer is allowed for).
class RequestLimit : public ::testing::TestWithParam<std::string> {};

// A frame of exactly `size` bytes (an error frame: its text fills it).
xt::bytes exactly(size_t size, uint64_t batch_id) {
  xt::frame_header h;
  h.batch_id = batch_id;
  auto f = xt::encode_error_frame(h, std::string(size - xt::frame_header_bytes, 'x'));
  EXPECT_EQ(f.size(), size);
  return f;
}

TEST_P(RequestLimit, RequestsOverTheLimitAreDroppedUnread) {
  const std::string backend = GetParam();
  for (bool sealed : {false, true}) {
    auto make = [&] {
      return sealed ? xt::make_endpoint(backend, test_key()) : xt::make_endpoint(backend);
    };
    std::atomic<int> handled{0};
    auto server = make();
    server->limit_requests(8192);
    server->listen(backend == "zmq" ? "tcp://127.0.0.1:0" : "ucx://127.0.0.1:0",
                   [&](xt::bytes m, std::shared_ptr<xt::reply_handle> r) {
                     ++handled;
                     r->send(echo_result(m));
                   });
    auto client = make();
    auto ch = client->connect(server->listen_address(), 5000);
    // `small` is exactly at the limit: sealed, it passes only if the trailer is allowed for.
    const auto big = dispatch_of_size(65536, 1), small = exactly(8192, 2);
    EXPECT_NE(call(*ch, big, 500ms).reply, echo_result(big)) << (sealed ? "sealed" : "plain");
    auto again = client->connect(server->listen_address(), 5000);  // as a head reconnects
    auto ok = call(*again, small);
    EXPECT_EQ(ok.error, "");
    EXPECT_EQ(ok.reply, echo_result(small));
    EXPECT_EQ(handled.load(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, RequestLimit, ::testing::Values("zmq", "ucx"));

// An arrival must not preempt the thread running on the core where it wakes an I/O thread
// (transport/io_priority.hpp).
class IoThreads : public ::testing::TestWithParam<std::string> {};

struct io_thread {
  int tid;
  std::string name;
  int policy;
};

// This process's threads named one of `names` that are not in `known` (by tid).
std::vector<io_thread> new_threads(const std::vector<std::string>& names,
                                   const std::vector<io_thread>& known = {}) {
  std::vector<io_thread> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    const int tid = std::stoi(task.path().filename());
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    const bool wanted = std::find(names.begin(), names.end(), name) != names.end();
    const bool seen =
        std::any_of(known.begin(), known.end(), [&](auto& t) { return t.tid == tid; });
    if (wanted && !seen) out.push_back({tid, name, sched_getscheduler(tid)});
  }
  return out;
}

// As new_threads, once each of `names` has a thread there, or after 5 s: libzmq's I/O thread
// names and schedules itself when it starts, which can be after listen() or connect() returned.
std::vector<io_thread> started_threads(const std::vector<std::string>& names,
                                       const std::vector<io_thread>& known = {}) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    auto threads = new_threads(names, known);
    const bool all = std::all_of(names.begin(), names.end(), [&](const std::string& name) {
      return std::any_of(threads.begin(), threads.end(), [&](auto& t) { return t.name == name; });
    });
    if (all || std::chrono::steady_clock::now() > until) return threads;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Each of `names` has a thread in `threads`, and every thread there runs `policy`.
void expect_policy(const std::vector<io_thread>& threads, const std::vector<std::string>& names,
                   int policy, const char* whose) {
  for (const auto& name : names)
    EXPECT_TRUE(
        std::any_of(threads.begin(), threads.end(), [&](auto& t) { return t.name == name; }))
        << whose << " has no thread named " << name;
  for (const auto& t : threads)
    EXPECT_EQ(t.policy, policy) << whose << "'s " << t.name << " (tid " << t.tid << ")";
}

// Every I/O thread, a listener's and a connector's, libzmq's own included, is SCHED_BATCH; the
// threads that call the endpoint are not.
TEST_P(IoThreads, AreBatchScheduledTheirCallersAreNot) {
  const std::string backend = GetParam();
  std::vector<std::string> names{"xmesh." + backend};
  if (backend == "zmq") names.emplace_back("ZMQbg/IO/0");
  auto known = new_threads(names);
  auto server = xt::make_endpoint(backend);
  server->listen(backend == "zmq" ? "tcp://127.0.0.1:0" : "ucx://127.0.0.1:0",
                 [](xt::bytes m, std::shared_ptr<xt::reply_handle> r) { r->send(echo_result(m)); });
  const auto listener = started_threads(names, known);
  known.insert(known.end(), listener.begin(), listener.end());
  auto client = xt::make_endpoint(backend);
  auto ch = client->connect(server->listen_address(), 5000);
  const auto request = dispatch_of_size(4096, 1);
  ASSERT_EQ(call(*ch, request).reply, echo_result(request));
  expect_policy(listener, names, SCHED_BATCH, "the listener");
  expect_policy(started_threads(names, known), names, SCHED_BATCH, "the connector");
  EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
}

INSTANTIATE_TEST_SUITE_P(Backends, IoThreads, ::testing::Values("zmq", "ucx"));

// Many threads seal with one sealer (sessions, expert actors do): every message gets its own
// nonce, every one opens once with any sealer of the key, and none opens twice; a reply opens
// only bound to its own request.
TEST(Sealer, ThreadsNeverShareANonceAndEachMessageOpensOnce) {
  xt::sealer sending(test_key()), receiving(test_key());
  constexpr int threads = 4, each = 500;
  std::vector<std::vector<xt::bytes>> sealed(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < each; ++i) {
        auto m = dispatch_of_size(512 + 64 * (i % 8), uint64_t(t * each + i));
        sending.seal(m, xt::seal_direction::reply);
        sealed[t].push_back(std::move(m));
      }
    });
  for (auto& th : pool) th.join();
  std::set<std::vector<std::byte>> nonces;
  for (auto& per_thread : sealed)
    for (auto& m : per_thread) {
      const auto* trailer = m.data() + m.size() - xt::sealer::trailer_bytes;
      nonces.insert(std::vector<std::byte>(trailer, trailer + 12));
    }
  EXPECT_EQ(nonces.size(), size_t{threads * each});
  for (int t = 0; t < threads; ++t)
    for (int i = 0; i < each; ++i) {
      auto copy = sealed[t][i];
      ASSERT_FALSE(receiving.open(sealed[t][i], xt::seal_direction::reply).has_value());
      EXPECT_EQ(sealed[t][i], dispatch_of_size(512 + 64 * (i % 8), uint64_t(t * each + i)));
      EXPECT_EQ(receiving.open(copy, xt::seal_direction::reply), xt::seal_drop::replayed);
    }
  auto request = dispatch_of_size(1024, 1), other = dispatch_of_size(1024, 2);
  const auto asked = sending.seal(request, xt::seal_direction::request);
  const auto not_asked = sending.seal(other, xt::seal_direction::request);
  EXPECT_EQ(receiving.open(request, xt::seal_direction::reply), xt::seal_drop::forged);
  // A reply bound to one request opens as the answer to it only.
  auto answer = dispatch_of_size(2048, 3);
  receiving.seal(answer, xt::seal_direction::reply, &asked);
  auto misplaced = answer, unbound = answer;
  EXPECT_EQ(sending.open(misplaced, xt::seal_direction::reply, &not_asked), xt::seal_drop::forged);
  EXPECT_EQ(sending.open(unbound, xt::seal_direction::reply), xt::seal_drop::forged);
  EXPECT_FALSE(sending.open(answer, xt::seal_direction::reply, &asked).has_value());
}

TEST(DataKey, RoundTripsThroughItsFileAndRefusesOthers) {
  const auto dir = std::filesystem::temp_directory_path() / ("xmesh-key-" + unique_suffix());
  std::filesystem::create_directories(dir);
  const auto key = xt::make_data_key();
  xt::write_data_key(dir / "data.key", key);
  EXPECT_EQ(std::filesystem::status(dir / "data.key").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(xt::read_data_key(dir).bytes, key.bytes);
  EXPECT_NE(xt::make_data_key().bytes, key.bytes);
  for (const std::string& bad :
       std::vector<std::string>{"", "00", std::string(64, 'g'), std::string(63, 'a')}) {
    std::ofstream(dir / "data.key") << bad;
    try {
      (void)xt::read_data_key(dir);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(
          std::string(e.what()).find((dir / "data.key").string() + ": missing or not a data key"),
          std::string::npos)
          << e.what();
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
