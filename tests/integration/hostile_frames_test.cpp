// A live expert node of an authenticated cluster under 10,000 random and mutated frames from a
// member, and a stranger's and replayed messages: it stays up, counts every drop by reason, and a
// request afterwards is still bit-identical to the single-process run.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "tests/support/free_ports.hpp"
#include "tests/support/paths.hpp"
#include "tests/support/run_process.hpp"
#include "transport/factory.hpp"
#include "transport/frame.hpp"

namespace xmesh {
namespace {

using namespace testing_support;

transport::bytes valid_frame(std::mt19937& gen, uint32_t hidden) {
  transport::frame_header h;
  h.layer = 0;
  h.batch_id = gen();
  h.num_rows = 1 + gen() % 4;
  h.hidden = hidden;
  std::vector<int32_t> experts(h.num_rows), rows(h.num_rows);
  for (uint32_t i = 0; i < h.num_rows; ++i)
    experts[i] = static_cast<int32_t>(gen() % 8), rows[i] = static_cast<int32_t>(i);
  std::vector<float> x(h.num_rows * hidden, 0.5f);
  return transport::encode_frame(h, experts, rows, x);
}

// One of seven kinds of damage, chosen by `i`.
transport::bytes hostile_frame(std::mt19937& gen, int i, uint32_t hidden) {
  auto b = valid_frame(gen, hidden);
  auto put32 = [&](size_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); };
  switch (i % 7) {
    case 0: {  // random bytes of random length
      transport::bytes r(gen() % 300);
      for (auto& c : r) c = static_cast<std::byte>(gen());
      return r;
    }
    case 1:
      put32(0, 0xDEADBEEF);
      return b;  // bad magic
    case 2:
      b[64 + gen() % (b.size() - 64)] ^= std::byte{0x5A};
      return b;  // checksum
    case 3:
      b.resize(gen() % b.size());
      return b;  // truncated
    case 4:
      put32(32, 1u << 30);
      return b;  // oversized row count
    case 5:
      put32(36, hidden + 1);
      return b;  // wrong hidden size
    default:
      b[6] = std::byte{static_cast<uint8_t>(9 + gen() % 200)};
      return b;  // bad kind
  }
}

TEST(HostileFrames, NodeSurvivesCountsDropsAndStaysExact) {
  temp_dir d;
  auto model = d.path() / "model";
  ASSERT_EQ(0, run_xmesh({"gen-model", "--family", "olmoe", "--preset", "tiny", "--seed", "9",
                          "--out", model})
                   .status);
  auto p = free_ports(7);
  auto cluster = d.path() / "cluster.yaml";
  std::ofstream(cluster)
      // Authenticated (local.sh makes the keys): the member's frames test the decoder's limits,
      // the stranger's and replayed ones the seal.
      << "model: " << model.string() << "\ntransport: zmq\nplacement: static\n"
      << "static_placement: {experts-a: [0, 1, 2, 3, 4, 5, 6, 7], experts-b: [0, 1]}\nnodes:\n"
      << "  - {name: head, control_port: " << p[0] << ", data_port: " << p[1]
      << ", roles: [coordinator, head]}\n"
      << "  - {name: experts-a, control_port: " << p[2] << ", data_port: " << p[3]
      << ", metrics_port: " << p[6] << ", roles: [experts]}\n"
      << "  - {name: experts-b, control_port: " << p[4] << ", data_port: " << p[5]
      << ", roles: [experts]}\n";
  std::string env = "XMESH_BIN=" + shell_quote(xmesh_bin().string()) +
                    " XMESH_RUN_DIR=" + shell_quote((d.path() / "run").string());
  std::string local = env + " " + shell_quote((source_dir() / "deploy/local.sh").string());
  ASSERT_EQ(0,
            std::system((local + " up " + shell_quote(cluster.string()) + " >/dev/null").c_str()));
  struct down_at_exit {
    std::string cmd;
    ~down_at_exit() { (void)std::system(cmd.c_str()); }
  } down{local + " down " + shell_quote(cluster.string()) + " >/dev/null"};

  std::vector<std::string> prompt = {"--tokens", "3,1,4,1,5",    "--max-new-tokens",
                                     "5",        "--ignore-eos", "--json"};
  auto args = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"generate", "--model", model.string()};
    a.insert(a.end(), prompt.begin(), prompt.end());
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  auto oracle = run_xmesh(args({"--logits-out", (d.path() / "oracle.npy").string()}));
  ASSERT_EQ(0, oracle.status) << oracle.err;

  const auto key = transport::read_data_key(d.path() / "cluster.keys");
  auto endpoint = transport::make_endpoint("zmq", key);  // a member
  auto channel = endpoint->connect("tcp://127.0.0.1:" + std::to_string(p[3]), 5000);
  constexpr int total = 10000;
  std::mutex m;
  std::condition_variable cv;
  int answered = 0;
  std::mt19937 gen(42);
  // Why the node must refuse each frame: what decoding with its limits says (olmoe tiny: hidden
  // 64, 8 experts), else the kind (only dispatch frames are served).
  std::map<std::string, int> expected;
  transport::frame_limits limits;
  limits.max_expert = 7;
  limits.expected_hidden = 64;
  limits.max_payload_bytes = uint64_t{limits.max_rows} * (16 + 4 * 64);
  for (int i = 0; i < total; ++i) {
    auto frame = hostile_frame(gen, i, 64);
    auto d = transport::decode_frame(frame, limits);
    ++expected[d ? (d.frame.header.kind == transport::frame_kind::dispatch ? "served"
                                                                           : "not_dispatch")
                 : std::string(transport::to_string(d.error))];
    channel->request(std::move(frame), [&](transport::bytes, std::string) {
      std::lock_guard lock(m);
      if (++answered == total) cv.notify_all();
    });
  }
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return answered == total; }))
        << answered << " of " << total << " answered";
  }
  // A stranger (plain, or another cluster's key) and a member's sealed message changed on the way
  // or captured and sent again: none is answered or decoded; each is counted by reason.
  std::mt19937 other(5);
  auto stranger = transport::make_endpoint("zmq");
  auto foreign = transport::make_endpoint("zmq", transport::make_data_key());
  auto unanswered = [&](transport::channel& ch, transport::bytes frame) {
    auto got = std::make_shared<std::promise<void>>();
    ch.request(std::move(frame), [got](transport::bytes, std::string) { got->set_value(); });
    return got->get_future().wait_for(std::chrono::milliseconds(300)) ==
           std::future_status::timeout;
  };
  const std::string data = "tcp://127.0.0.1:" + std::to_string(p[3]);
  auto stranger_ch = stranger->connect(data, 5000);
  auto foreign_ch = foreign->connect(data, 5000);
  EXPECT_TRUE(unanswered(*stranger_ch, valid_frame(other, 64)));
  EXPECT_TRUE(unanswered(*foreign_ch, valid_frame(other, 64)));
  transport::sealer member(key);
  auto captured = valid_frame(other, 64);
  const auto request = member.seal(captured, transport::seal_direction::request);
  auto changed = captured;
  changed[10] ^= std::byte{4};
  EXPECT_TRUE(unanswered(*stranger_ch, changed));
  std::promise<transport::bytes> first;
  stranger_ch->request(captured, [&](transport::bytes r, std::string) { first.set_value(r); });
  auto reply = first.get_future().get();
  ASSERT_FALSE(member.open(reply, transport::seal_direction::reply, &request).has_value());
  EXPECT_EQ(transport::decode_frame(reply, limits).frame.header.kind,
            transport::frame_kind::result);
  EXPECT_TRUE(unanswered(*stranger_ch, captured));
  expected["unauthenticated"] = 3;
  expected["replayed"] = 1;

  auto status = run_xmesh({"cluster", "status", "--cluster", cluster.string(), "--json"});
  ASSERT_EQ(0, status.status) << status.err;
  auto j = nlohmann::json::parse(status.out);
  EXPECT_EQ(j["nodes"]["experts-a"]["frames_dropped"].get<int>(), total) << status.out;
  // The node's /metrics counts every drop under its reason.
  auto metrics_file = d.path() / "metrics.txt";
  ASSERT_EQ(0, std::system(("curl -sf http://127.0.0.1:" + std::to_string(p[6]) + "/metrics > " +
                            shell_quote(metrics_file.string()))
                               .c_str()));
  struct {
    std::string out;
  } metrics{read_text(metrics_file)};
  std::map<std::string, int> counted;
  std::istringstream lines(metrics.out);
  const std::string prefix = R"(xmesh_frames_dropped_total{node="experts-a",reason=")";
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(prefix, 0) == 0) {
      auto end = line.find('"', prefix.size());
      int n = static_cast<int>(std::stod(line.substr(line.find(' ', end) + 1)));
      if (n > 0) counted[line.substr(prefix.size(), end - prefix.size())] = n;
    }
  EXPECT_EQ(expected.count("served"), 0u);
  EXPECT_GE(counted.size(), 8u);  // magic, checksum, truncation, size, hidden, kind; the seal's
  EXPECT_EQ(counted, expected) << metrics.out;

  auto after = run_xmesh(
      args({"--cluster", cluster.string(), "--logits-out", (d.path() / "after.npy").string()}));
  ASSERT_EQ(0, after.status) << after.err;
  EXPECT_EQ(nlohmann::json::parse(after.out)["tokens"],
            nlohmann::json::parse(oracle.out)["tokens"]);
  EXPECT_EQ(read_text(d.path() / "after.npy"), read_text(d.path() / "oracle.npy"));
}

}  // namespace
}  // namespace xmesh
