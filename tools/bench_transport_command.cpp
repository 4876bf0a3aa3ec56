// `xmesh bench transport`: round-trip latency and throughput of real dispatch frames between
// two processes. The client re-executes this binary (/proc/self/exe) with the hidden
// `--serve ADDRESS` flag as the echo server, which decodes and validates every dispatch frame
// and answers a result frame of the same size.
#include <poll.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "tools/commands.hpp"
#include "tools/flags.hpp"
#include "transport/factory.hpp"
#include "transport/frame.hpp"
#include "transport/transport.hpp"

namespace xmesh::tools {
namespace {

namespace xt = xmesh::transport;
using clock_type = std::chrono::steady_clock;

constexpr uint32_t bench_hidden = 1024;
// Header flag (flags field, offset 40, outside the checksum): answer with a header-only result
// frame, so throughput counts one direction like ucx_perftest's bandwidth tests.
constexpr uint32_t flag_ack_only = 1;
constexpr size_t flags_offset = 40;
constexpr size_t row_bytes = 8 + bench_hidden * sizeof(float);

xt::frame_limits bench_limits() {
  xt::frame_limits l;
  l.expected_hidden = bench_hidden;
  l.max_rows = 1u << 20;
  l.max_expert = 255;
  return l;
}

// The dispatch frame whose size is closest to `size` (at least one row of hidden 1024).
xt::bytes make_dispatch(size_t size, uint64_t batch_id) {
  const uint32_t rows = uint32_t(std::max<size_t>(1, (size + row_bytes / 2) / row_bytes));
  xt::frame_header h;
  h.kind = xt::frame_kind::dispatch;
  h.layer = 3;
  h.batch_id = batch_id;
  h.num_rows = rows;
  h.hidden = bench_hidden;
  std::vector<int32_t> experts(rows), tokens(rows);
  std::vector<float> data(size_t(rows) * bench_hidden);
  for (uint32_t r = 0; r < rows; ++r) {
    experts[r] = int32_t(r % 64);
    tokens[r] = int32_t(r);
  }
  for (size_t i = 0; i < data.size(); ++i) data[i] = float(i % 4093) * 0.25f;
  return xt::encode_frame(h, experts, tokens, data);
}

// -- server -----------------------------------------------------------------------------------

int serve(const std::string& transport, const std::string& address,
          const std::optional<xt::data_key>& key) {
  auto ep = xt::make_endpoint(transport, key);
  const auto limits = bench_limits();
  ep->listen(address, [limits](xt::bytes m, std::shared_ptr<xt::reply_handle> reply) {
    auto d = xt::decode_frame(m, limits);
    if (!d) return reply->send(xt::encode_error_frame({}, d.reason));
    if (d.frame.header.flags & flag_ack_only) {
      auto h = d.frame.header;
      h.kind = xt::frame_kind::result;
      h.num_rows = 0;
      return reply->send(xt::encode_frame(h, {}, {}, {}));
    }
    // Echo in place: the rows come back unchanged, so the payload checksum stays valid and
    // only the kind byte (offset 6, outside the checksum) changes. A real expert encodes anew.
    m[6] = std::byte(static_cast<uint8_t>(xt::frame_kind::result));
    reply->send(std::move(m));
  });
  std::cout << "LISTENING " << ep->listen_address() << std::endl;
  // Serve until the client closes our stdin (or kills us).
  char buf[64];
  while (::read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}

// The echo server child: its pid, the pipe to its stdin, and the address it printed.
struct server_process {
  pid_t pid = -1;
  int stdin_fd = -1;
  std::string address;
  ~server_process() {
    if (stdin_fd >= 0) ::close(stdin_fd);
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

void spawn_server(server_process& s, const std::string& transport, const std::string& bind,
                  const std::string& keys) {
  int in[2], out[2];
  if (::pipe(in) != 0 || ::pipe(out) != 0) throw std::runtime_error("pipe failed");
  s.pid = ::fork();
  if (s.pid < 0) throw std::runtime_error("fork failed");
  if (s.pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::close(in[1]);
    ::close(out[0]);
    const char* args[] = {
        "xmesh",           "bench",   "transport",  "--transport",
        transport.c_str(), "--serve", bind.c_str(), keys.empty() ? nullptr : "--keys",
        keys.c_str(),      nullptr};
    ::execv("/proc/self/exe", const_cast<char* const*>(args));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  s.stdin_fd = in[1];
  // Read "LISTENING ADDRESS\n", bounded in time.
  std::string line;
  auto deadline = clock_type::now() + std::chrono::seconds(20);
  while (line.find('\n') == std::string::npos && clock_type::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char c[256];
    auto n = ::read(out[0], c, sizeof c);
    if (n <= 0) break;
    line.append(c, size_t(n));
  }
  ::close(out[0]);
  const std::string tag = "LISTENING ";
  if (line.rfind(tag, 0) != 0) throw std::runtime_error("echo server did not start: " + line);
  s.address = line.substr(tag.size(), line.find('\n') - tag.size());
}

// -- client -----------------------------------------------------------------------------------

// One measurement's state, shared with its reply callbacks. They run on the transport's thread
// and may outlive a failed measurement, so it lives on the heap; after a failure nothing more is
// sent, and the measurement returns (throwing) once no request is in flight, before the channel
// they send on can go away.
struct measurement {
  std::mutex m;
  std::condition_variable cv;
  std::atomic<size_t> done{0}, sent{0};  // replies counted; requests sent (measure_window)
  std::atomic<int> in_flight{0};
  std::atomic<bool> stopped{false};
  std::string error;
  std::function<void()> send_one;
  std::vector<double> us;  // round trips, for measure_rtt
  clock_type::time_point t0;

  void fail(const std::string& e) {
    std::lock_guard lock(m);
    if (error.empty()) error = e;
    stopped = true;
    cv.notify_all();
  }
  // Every callback ends here, whatever the reply was.
  void returned() {
    if (--in_flight == 0) {
      std::lock_guard lock(m);
      cv.notify_all();
    }
  }
  void tick(size_t target) {
    if (++done >= target) {
      std::lock_guard lock(m);
      cv.notify_all();
    }
  }
  void wait(size_t target) {
    std::unique_lock lock(m);
    const bool finished = cv.wait_for(lock, std::chrono::seconds(120),
                                      [&] { return done >= target || !error.empty(); });
    if (finished && error.empty()) return;
    stopped = true;
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return in_flight == 0; });
    throw std::runtime_error(error.empty() ? "benchmark timed out" : error);
  }
};

bool valid_reply(const xt::bytes& reply, size_t expect_bytes) {
  if (reply.size() != expect_bytes) return false;
  auto d = xt::decode_frame(reply, bench_limits());
  return d.ok() && d.frame.header.kind == xt::frame_kind::result;
}

// Sequential round trips: each reply's callback (on the receive thread) records the time and
// sends the next request, so no extra thread hop is measured.
std::vector<double> measure_rtt(xt::channel& ch, const xt::bytes& frame, size_t iterations) {
  auto s = std::make_shared<measurement>();
  s->us.resize(iterations);
  std::weak_ptr<measurement> weak = s;  // (send_one lives in *s: no cycle)
  s->send_one = [weak, &ch, &frame, iterations] {
    auto s = weak.lock();
    if (!s || s->stopped) return;
    ++s->in_flight;
    s->t0 = clock_type::now();
    ch.request(xt::copy_bytes(frame.data(), frame.size()),
               [s, size = frame.size(), iterations](xt::bytes reply, std::string error) {
                 const auto t1 = clock_type::now();
                 if (!error.empty() || !valid_reply(reply, size)) {
                   s->fail(error.empty() ? "bad reply" : error);
                 } else {
                   const size_t k = s->done;  // one in flight: the replies so far
                   s->us[k] = std::chrono::duration<double, std::micro>(t1 - s->t0).count();
                   s->tick(iterations);  // counted before the next request can be answered
                   if (k + 1 < iterations) s->send_one();
                 }
                 s->returned();
               });
  };
  s->send_one();
  s->wait(iterations);
  return s->us;
}

// `window` requests in flight until `iterations` replies came back; returns seconds.
double measure_window(xt::channel& ch, const xt::bytes& frame, size_t iterations, size_t window,
                      size_t reply_size) {
  auto s = std::make_shared<measurement>();
  std::weak_ptr<measurement> weak = s;
  s->send_one = [weak, &ch, &frame, iterations, reply_size] {
    auto s = weak.lock();
    if (!s || s->stopped || s->sent++ >= iterations) return;
    ++s->in_flight;
    ch.request(xt::copy_bytes(frame.data(), frame.size()),
               [s, reply_size, iterations](xt::bytes reply, std::string error) {
                 if (!error.empty() || reply.size() != reply_size) {
                   s->fail(error.empty() ? "bad reply" : error);
                 } else {
                   s->send_one();
                   s->tick(iterations);
                 }
                 s->returned();
               });
  };
  auto t0 = clock_type::now();
  for (size_t w = 0; w < std::min(window, iterations); ++w) s->send_one();
  s->wait(iterations);
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t k = std::min(v.size() - 1, size_t(p / 100.0 * double(v.size())));
  return v[k];
}

std::string machine() {
  utsname u{};
  ::uname(&u);
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, model;
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return std::string(u.nodename) + ", " + model + ", " +
         std::to_string(std::thread::hardware_concurrency()) + " cpus";
}

}  // namespace

int bench_transport_main(int argc, char** argv) {
  flags f("bench transport",
          "--transport ucx|zmq|local [--sizes 4096,65536,1048576] "
          "[--iterations N] [--window W] [--bind ADDRESS] [--json]",
          {{"--transport", true, "back end: ucx, zmq (or local, in one process)"},
           {"--sizes", true, "frame sizes in bytes (rounded to whole rows of hidden 1024)"},
           {"--iterations", true, "round trips per size (default 2000; 1 MiB: a quarter)"},
           {"--window", true, "requests in flight for the throughput run (default 8)"},
           {"--bind", true, "server address (default 127.0.0.1, ephemeral port)"},
           {"--serve", true, "internal: run the echo server on ADDRESS"},
           {"--keys", true,
            "a cluster's keys folder: frames are sealed with its data key (the default security)"},
           {"--json", false, "print JSON"}},
          argc, argv);
  const std::string transport = f.str("--transport");
  if (transport != "ucx" && transport != "zmq" && transport != "local")
    throw usage_error("--transport must be ucx, zmq or local");
  const std::string keys_dir = f.opt("--keys").value_or("");
  std::optional<xt::data_key> key;
  if (!keys_dir.empty()) key = xt::read_data_key(keys_dir);
  if (f.has("--serve")) return serve(transport, f.str("--serve"), key);
  std::vector<int64_t> sizes =
      f.has("--sizes") ? f.integers("--sizes") : std::vector<int64_t>{4096, 65536, 1048576};
  const int64_t iterations = f.integer("--iterations", 2000);
  const int64_t window = f.integer("--window", 8);
  if (iterations < 10 || window < 1) throw usage_error("--iterations >= 10 and --window >= 1");
  for (auto s : sizes) {
    if (s < 1 || s > (64 << 20)) throw usage_error("--sizes: each in 1..64 MiB");
  }
  std::string bind = f.opt("--bind").value_or(transport == "ucx"   ? "ucx://127.0.0.1:0"
                                              : transport == "zmq" ? "tcp://127.0.0.1:0"
                                                                   : "local://bench");
  server_process server;
  if (transport == "local") {
    throw usage_error("--transport local is not measured across processes");
  }
  spawn_server(server, transport, bind, keys_dir);
  auto client = xt::make_endpoint(transport, key);
  auto ch = client->connect(server.address, 10000);

  nlohmann::json results = nlohmann::json::array();
  for (auto size : sizes) {
    auto frame = make_dispatch(size_t(size), uint64_t(size));
    size_t n = size_t(size >= (1 << 20) ? std::max<int64_t>(10, iterations / 4) : iterations);
    (void)measure_rtt(*ch, frame, std::min<size_t>(n, 200));  // warm-up: wire-up, allocator
    auto rtt = measure_rtt(*ch, frame, n);
    double secs = measure_window(*ch, frame, n, size_t(window), frame.size());
    auto ack_frame = frame;
    ack_frame[flags_offset] |= std::byte{flag_ack_only};
    double one_way_secs = measure_window(*ch, ack_frame, n, size_t(window), xt::frame_header_bytes);
    double mean = 0;
    for (double v : rtt) mean += v / double(rtt.size());
    results.push_back(
        {{"size", size},
         {"frame_bytes", frame.size()},
         {"rows", (frame.size() - 64) / row_bytes},
         {"iterations", n},
         {"rtt_p50_us", percentile(rtt, 50)},
         {"rtt_p99_us", percentile(rtt, 99)},
         {"rtt_mean_us", mean},
         {"window", window},
         {"throughput_mbps", double(n) * double(frame.size()) / secs / 1e6},
         {"one_way_throughput_mbps", double(n) * double(frame.size()) / one_way_secs / 1e6}});
  }
  ch.reset();
  client.reset();
  nlohmann::json out{{"transport", transport},
                     {"sealed", key.has_value()},
                     {"server", server.address},
                     {"hidden", bench_hidden},
                     {"machine", machine()},
                     {"note",
                      "rtt: one request at a time, next sent from the reply callback; "
                      "throughput: request-direction bytes, replies carry as many; "
                      "one_way_throughput: same frames, header-only acknowledgements"},
                     {"results", results}};
  if (f.has("--json")) {
    std::cout << out.dump(2) << "\n";
  } else {
    for (auto& r : results)
      std::printf("%s %8lld B  p50 %8.1f us  p99 %8.1f us  %8.1f MB/s\n", transport.c_str(),
                  (long long)r["frame_bytes"].get<size_t>(), r["rtt_p50_us"].get<double>(),
                  r["rtt_p99_us"].get<double>(), r["throughput_mbps"].get<double>());
  }
  return 0;
}

}  // namespace xmesh::tools
