// The raw ZeroMQ baseline for `xmesh bench transport`: a plain cppzmq DEALER -> ROUTER echo
// of opaque messages (no frame encoding, no validation), measured the same way.
//   zmq_echo serve tcp://127.0.0.1:PORT
//   zmq_echo client tcp://127.0.0.1:PORT SIZE[,SIZE...] ITERATIONS WINDOW   (prints JSON)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

int serve(const std::string& address) {
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::router);
  s.set(zmq::sockopt::linger, 0);
  s.bind(address);
  for (;;) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(s, std::back_inserter(parts))) continue;
    zmq::send_multipart(s, parts);  // [identity, payload] back, no copy
  }
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p / 100.0 * double(v.size())))];
}

int client(const std::string& address, const std::string& sizes, size_t iterations, size_t window) {
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(address);
  std::printf("[");
  size_t pos = 0;
  bool first = true;
  while (pos < sizes.size()) {
    size_t comma = sizes.find(',', pos);
    size_t size = std::stoul(sizes.substr(pos, comma - pos));
    pos = comma == std::string::npos ? sizes.size() : comma + 1;
    size_t n = size >= (1u << 20) ? std::max<size_t>(10, iterations / 4) : iterations;
    std::vector<char> payload(size, 'x');
    std::vector<double> us;
    zmq::message_t reply;
    for (size_t i = 0; i < n + std::min<size_t>(n, 200); ++i) {  // warm-up first
      auto t0 = clock_type::now();
      s.send(zmq::buffer(payload), zmq::send_flags::none);
      (void)s.recv(reply, zmq::recv_flags::none);
      if (i >= std::min<size_t>(n, 200))
        us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    }
    auto t0 = clock_type::now();
    size_t sent = 0, got = 0;
    for (; sent < std::min(window, n); ++sent) s.send(zmq::buffer(payload), zmq::send_flags::none);
    while (got < n) {
      (void)s.recv(reply, zmq::recv_flags::none);
      ++got;
      if (sent < n) {
        s.send(zmq::buffer(payload), zmq::send_flags::none);
        ++sent;
      }
    }
    double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    std::printf(
        "%s{\"size\": %zu, \"iterations\": %zu, \"rtt_p50_us\": %.2f, \"rtt_p99_us\": %.2f, "
        "\"window\": %zu, \"throughput_mbps\": %.1f}",
        first ? "" : ", ", size, n, percentile(us, 50), percentile(us, 99), window,
        double(n) * double(size) / secs / 1e6);
    first = false;
  }
  std::printf("]\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "serve") return serve(argv[2]);
  if (argc == 6 && std::string(argv[1]) == "client")
    return client(argv[2], argv[3], std::strtoul(argv[4], nullptr, 10),
                  std::strtoul(argv[5], nullptr, 10));
  std::fprintf(stderr, "usage: zmq_echo serve ADDRESS | client ADDRESS SIZES ITERATIONS WINDOW\n");
  return 2;
}
