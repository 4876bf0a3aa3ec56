// Planner vs EPLB, side by side on generated Zipf loads, and the planner's time on a DeepSeek-V3
// sized problem (61 layers x 256 experts x 64 hosts). Prints one JSON document.
//   placement_bench [--quick]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "bench/placement/eplb.hpp"
#include "placement/planner.hpp"

namespace {

namespace pl = xmesh::placement;
namespace eplb = xmesh::bench::eplb;
using nlohmann::json;
using clock_type = std::chrono::steady_clock;

// Zipf(s) loads, popularity order shuffled per layer (experts are not hot in id order).
pl::load_matrix zipf_load(int32_t layers, int32_t experts, double s, uint32_t seed) {
  std::mt19937 rng(seed);
  pl::load_matrix load;
  for (int32_t l = 0; l < layers; ++l) {
    std::vector<double> w(static_cast<size_t>(experts));
    double sum = 0.0;
    for (int32_t r = 0; r < experts; ++r) sum += w[static_cast<size_t>(r)] = std::pow(r + 1, -s);
    for (auto& x : w) x = std::round(x / sum * 1e6);
    std::shuffle(w.begin(), w.end(), rng);
    load.push_back(std::move(w));
  }
  return load;
}

struct bench_case {
  int32_t experts, hosts, replicas;
  double zipf;
  bool heterogeneous;  // hosts alternate speed 1 and 2 (EPLB assumes equal hosts)
  int32_t groups = 0, nodes = 0;
};

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

json run_case(const bench_case& c, int32_t layers, uint32_t seed) {
  auto load = zipf_load(layers, c.experts, c.zipf, seed);
  pl::plan_options o;
  o.num_replicas = c.replicas;
  o.num_groups = c.groups;
  o.num_nodes = c.nodes;
  for (int32_t h = 0; h < c.hosts; ++h)
    o.hosts.push_back({c.replicas / c.hosts, c.heterogeneous && h % 2 ? 2.0 : 1.0});
  auto t0 = clock_type::now();
  auto ours = pl::plan(load, o);
  double plan_s = seconds_since(t0);
  t0 = clock_type::now();
  auto base =
      eplb::to_placement(eplb::rebalance_experts(load, c.replicas, c.groups > 0 ? c.groups : 1,
                                                 c.groups > 0 ? c.nodes : 1, c.hosts),
                         c.hosts);
  double eplb_s = seconds_since(t0);
  auto theirs = pl::evaluate(load, o, base);
  double worst_layer_gap = 1.0;
  for (size_t l = 0; l < load.size(); ++l)
    worst_layer_gap = std::min(worst_layer_gap, ours.report.layers[l].balancedness_after -
                                                    theirs.layers[l].balancedness_after);
  return {{"experts", c.experts},
          {"hosts", c.hosts},
          {"replicas", c.replicas},
          {"redundant", static_cast<double>(c.replicas - c.experts) / c.experts},
          {"zipf_s", c.zipf},
          {"speeds", c.heterogeneous ? "1,2,1,2..." : "equal"},
          {"groups", c.groups},
          {"nodes", c.nodes},
          {"layers", layers},
          {"planner", ours.report.balancedness_after},
          {"eplb", theirs.balancedness_after},
          {"naive", ours.report.balancedness_before},
          {"worst_layer_gain", worst_layer_gap},
          {"planner_ms", plan_s * 1e3},
          {"eplb_ms", eplb_s * 1e3}};
}

// Every (experts, hosts, redundancy) combination in the ranges that EPLB accepts
// (R a multiple of the hosts) with 5-40 % redundant slots once R is rounded to that multiple.
std::vector<bench_case> cases(bool quick) {
  std::vector<bench_case> out;
  for (double s : {0.8, 1.0, 1.2})
    for (int32_t e : {16, 32, 64, 128})
      for (int32_t n : {8, 16, 32, 64})
        for (double r : {0.1, 0.2, 0.3}) {
          auto replicas = static_cast<int32_t>(std::lround(e * (1 + r) / n)) * n;
          double actual = static_cast<double>(replicas - e) / e;
          if (actual < 0.05 || actual > 0.4 || replicas / n > e) continue;
          bool seen = std::any_of(out.begin(), out.end(), [&](const bench_case& c) {
            return c.experts == e && c.hosts == n && c.replicas == replicas && c.zipf == s;
          });
          if (seen) continue;
          for (bool het : {false, true}) out.push_back({e, n, replicas, s, het});
          if (n >= 16 && !quick)
            out.push_back({e, n, replicas, s, false, 8, n / 8});  // hierarchical
        }
  return out;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  json rows = json::array();
  double sum_ours = 0, sum_theirs = 0, sum_ours_het = 0, sum_theirs_het = 0;
  int32_t not_worse = 0, strictly_better_het = 0, het = 0;
  uint32_t seed = 1;
  for (const auto& c : cases(quick)) {
    auto row = run_case(c, quick ? 2 : 8, seed++);
    double a = row["planner"], b = row["eplb"];
    sum_ours += a, sum_theirs += b;
    not_worse += a >= b - 1e-12;
    if (c.heterogeneous)
      ++het, sum_ours_het += a, sum_theirs_het += b, strictly_better_het += a > b;
    rows.push_back(std::move(row));
  }
  auto n = static_cast<double>(rows.size());
  // The size the issue budgets: 61 layers x 256 experts x 64 hosts, 320 slots (25 % redundant).
  auto big = run_case({256, 64, 320, 1.0, false}, 61, 4242);
  json out = {{"machine",
               {{"cpu", cpu_model()},
                {"hardware_threads", std::thread::hardware_concurrency()},
                {"threads_used", 1}}},
              {"cases", rows},
              {"summary",
               {{"cases", rows.size()},
                {"planner_not_worse", not_worse},
                {"planner_mean", sum_ours / n},
                {"eplb_mean", sum_theirs / n},
                {"heterogeneous_cases", het},
                {"heterogeneous_strictly_better", strictly_better_het},
                {"heterogeneous_planner_mean", het ? sum_ours_het / het : 0.0},
                {"heterogeneous_eplb_mean", het ? sum_theirs_het / het : 0.0}}},
              {"deepseek_v3_size",
               {{"layers", 61},
                {"experts", 256},
                {"hosts", 64},
                {"replicas", 320},
                {"planner_ms", big["planner_ms"]},
                {"eplb_ms", big["eplb_ms"]},
                {"planner", big["planner"]},
                {"eplb", big["eplb"]}}}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
