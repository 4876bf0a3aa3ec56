// The metrics catalogue: what a node exports, how per-expert series stay bounded, and that the
// dashboards and rules name only metrics the code registers.
#include "actors/metrics.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "actors/placement_table.hpp"
#include "tests/support/paths.hpp"

namespace xmesh::actors {
namespace {

// The value of one series in exposition text, or -1 when absent.
double value_of(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

TEST(Metrics, EveryCatalogueMetricIsRegisteredWithHelp) {
  node_metrics m("head", "zmq", 4096);
  m.set_shape(2, 4);
  m.peer_of("experts-a");
  auto text = m.text();
  for (const auto& s : metric_catalogue()) {
    // Label sets that appear only with data (replicas, heartbeat ages) are registered on use, and
    // only nodes with an expert store have its series.
    if (s.name == "xmesh_expert_replicas" || s.name == "xmesh_heartbeat_age_seconds" ||
        s.name.rfind("xmesh_store_", 0) == 0)
      continue;
    EXPECT_NE(text.find("# HELP " + std::string(s.name) + " "), std::string::npos) << s.name;
    EXPECT_NE(text.find("# TYPE " + std::string(s.name) + " " + std::string(s.type)),
              std::string::npos)
        << s.name;
  }
  // Every reason a frame can be dropped for exists at 0 before the first drop.
  EXPECT_EQ(value_of(text, R"(xmesh_frames_dropped_total{node="head",reason="bad_checksum"})"), 0);
}

TEST(Metrics, RequestsAddUp) {
  node_metrics m("head", "zmq", 4096);
  m.request_started();
  m.request_started();
  EXPECT_EQ(value_of(m.text(), R"(xmesh_requests_running{node="head"})"), 2);
  m.request_done(5, {0.5, 0.6, 0.7, 0.8}, 0.9);  // 4 tokens, first after 0.5 s, then 0.1 s each
  m.request_failed(request_failure::expert_node);
  auto text = m.text();
  EXPECT_EQ(value_of(text, R"(xmesh_requests_running{node="head"})"), 0);
  EXPECT_EQ(value_of(text, R"(xmesh_requests_total{node="head"})"), 1);
  EXPECT_EQ(value_of(text, R"(xmesh_prompt_tokens_total{node="head"})"), 5);
  EXPECT_EQ(value_of(text, R"(xmesh_generation_tokens_total{node="head"})"), 4);
  EXPECT_EQ(value_of(text, R"(xmesh_requests_failed_total{node="head",reason="expert_node"})"), 1);
  EXPECT_EQ(value_of(text, R"(xmesh_time_to_first_token_seconds_sum{node="head"})"), 0.5);
  EXPECT_NEAR(value_of(text, R"(xmesh_time_per_output_token_seconds_sum{node="head"})"), 0.1,
              1e-12);
  EXPECT_EQ(value_of(text, R"(xmesh_time_per_output_token_seconds_bucket{node="head",le="0.05"})"),
            0);
  EXPECT_EQ(value_of(text, R"(xmesh_time_per_output_token_seconds_bucket{node="head",le="0.25"})"),
            1);
}

TEST(Metrics, PerExpertSeriesAreSummedPerLayerAboveTheLimit) {
  placement_table t;
  t.num_layers = 2;
  t.num_experts = 4;
  t.nodes = {"a", "b"};
  t.addresses = {"x", "y"};
  t.replica_node = {0, 1, 0, 1, 0, 1, 0, 0, 1};
  t.replica_begin = {0, 2, 3, 4, 5, 6, 7, 8, 9};
  node_metrics fine("head", "zmq", 8), coarse("head", "zmq", 7);
  for (auto* m : {&fine, &coarse}) {
    m->set_shape(2, 4);
    m->tokens_routed(5).Increment(3);  // layer 1, expert 1
    m->tokens_routed(6).Increment(2);  // layer 1, expert 2
    m->set_replicas(t);
  }
  auto f = fine.text(), c = coarse.text();
  EXPECT_EQ(value_of(f, R"(xmesh_tokens_routed_total{node="head",expert="1",layer="1"})"), 3);
  EXPECT_EQ(value_of(f, R"(xmesh_expert_replicas{node="head",expert="0",layer="0"})"), 2);
  EXPECT_EQ(value_of(c, R"(xmesh_tokens_routed_total{node="head",expert="all",layer="1"})"), 5);
  EXPECT_EQ(value_of(c, R"(xmesh_expert_replicas{node="head",expert="all",layer="0"})"), 5);
  EXPECT_EQ(c.find(R"(expert="1")"), std::string::npos);  // bounded: no per-expert series
}

// Metric names a dashboard query or rule expression mentions (histogram suffixes stripped).
std::set<std::string> names_in(const std::string& text) {
  std::set<std::string> out;
  static const std::regex name(R"(\bxmesh_[a-z0-9_]+)");
  for (std::sregex_iterator it(text.begin(), text.end(), name), end; it != end; ++it) {
    std::string n = it->str();
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (n.size() > std::strlen(suffix) &&
          n.compare(n.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        n.resize(n.size() - std::strlen(suffix));
    out.insert(n);
  }
  return out;
}

TEST(Metrics, DashboardsAndRulesNameOnlyRegisteredMetrics) {
  std::set<std::string> known;
  for (const auto& s : metric_catalogue()) known.insert(std::string(s.name));
  auto dir = testing_support::source_dir() / "dashboards";
  int files = 0;
  std::set<std::string> used;
  for (const auto& sub : {"grafana", "rules"})
    for (const auto& f : std::filesystem::directory_iterator(dir / sub)) {
      if (f.path().filename().string().find(".test.") != std::string::npos) continue;  // inputs
      std::ifstream in(f.path());
      std::stringstream text;
      text << in.rdbuf();
      auto names = names_in(text.str());
      for (const auto& n : names) EXPECT_TRUE(known.count(n)) << f.path() << " names " << n;
      used.insert(names.begin(), names.end());
      ++files;
    }
  EXPECT_EQ(files, 5);          // four dashboards and the rules
  EXPECT_GE(used.size(), 25u);  // the dashboards show nearly the whole catalogue
}

}  // namespace
}  // namespace xmesh::actors
