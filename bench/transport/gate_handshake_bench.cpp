// How long a control connection takes to open through the gates (a node joining, a command
// connecting) and what a message's round trip costs through them, with mutual TLS and plain
// (`security: none`); loopback, one echo behind the listening gate. Prints one JSON object.
// usage: gate_handshake_bench [CONNECTIONS]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "transport/gate/control_gate.hpp"

namespace {

namespace fs = std::filesystem;
using namespace xmesh::transport;
using clock_type = std::chrono::steady_clock;

// A control-plane message of `payload` bytes (the 32-byte header's length field set).
std::vector<uint8_t> message(uint32_t payload) {
  std::vector<uint8_t> m(32 + payload, 1);
  for (int i = 0; i < 4; ++i) m[4 + i] = static_cast<uint8_t>(payload >> (24 - 8 * i));
  return m;
}

bool round_trip(int fd, const std::vector<uint8_t>& m) {
  if (::send(fd, m.data(), m.size(), 0) != static_cast<ssize_t>(m.size())) return false;
  std::vector<uint8_t> back(m.size());
  size_t got = 0;
  while (got < back.size()) {
    ssize_t r = ::recv(fd, back.data() + got, back.size() - got, 0);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

nlohmann::json measure(const std::optional<tls_identity>& server_id,
                       const std::optional<tls_identity>& client_id, int connections) {
  control_gate server("bench server", server_id);
  const uint16_t port = server.listen("127.0.0.1", 0, [](int fd) {
    std::thread([fd] {
      uint8_t buf[16384];
      for (ssize_t r; (r = ::recv(fd, buf, sizeof buf, 0)) > 0;)
        (void)::send(fd, buf, static_cast<size_t>(r), MSG_NOSIGNAL);
      ::close(fd);
    }).detach();
  });
  control_gate client("bench client", client_id);
  auto dial = [&] {
    int pair[2];
    ::socketpair(AF_UNIX, SOCK_STREAM, 0, pair);
    client.dial(pair[1], "127.0.0.1", port, server_id ? "server" : "");
    return pair[0];
  };
  const auto first = message(64), big = message(4096);
  std::vector<double> open_ms, rtt_us;
  for (int i = 0; i < connections; ++i) {
    const auto t0 = clock_type::now();
    int fd = dial();
    if (!round_trip(fd, first)) throw std::runtime_error("connection failed");
    open_ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    ::close(fd);
  }
  int fd = dial();
  round_trip(fd, first);
  for (int i = 0; i < 2000; ++i) {
    const auto t0 = clock_type::now();
    round_trip(fd, big);
    rtt_us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  ::close(fd);
  return {{"connect_and_first_message_ms_p50", percentile(open_ms, 0.5)},
          {"connect_and_first_message_ms_p90", percentile(open_ms, 0.9)},
          {"round_trip_4kib_us_p50", percentile(rtt_us, 0.5)},
          {"round_trip_4kib_us_p90", percentile(rtt_us, 0.9)}};
}

}  // namespace

int main(int argc, char** argv) {
  const int connections = argc > 1 ? std::atoi(argv[1]) : 200;
  const fs::path dir =
      fs::temp_directory_path() / ("xmesh-gate-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  write_tls_identities(dir, {"server", "client"});
  nlohmann::json out = {
      {"connections", connections},
      {"tls", measure(tls_identity_in(dir, "server"), tls_identity_in(dir, "client"), connections)},
      {"plain", measure(std::nullopt, std::nullopt, connections)},
      {"machine_threads", std::thread::hardware_concurrency()}};
  fs::remove_all(dir);
  std::printf("%s\n", out.dump(1).c_str());
}
